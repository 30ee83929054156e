package io.lorafleet.driver.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.function.Function;
import org.junit.jupiter.api.Test;

/** Streamed text: final only, never half a character, never the start of a stop string, cut before a stop string. */
class TextStreamTest {
  /**
   * A decoder over ids: 0..25 are the letters a..z, 26 is a space, and 30 then 31 are the two bytes
   * of "é": 30 alone decodes to U+FFFD, as byte-level BPE does with half a character.
   */
  static final Function<int[], String> DECODE = ids -> {
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < ids.length; i++) {
      int t = ids[i];
      if (t == 30) {
        sb.append(i + 1 < ids.length && ids[i + 1] == 31 ? "é" : "\uFFFD");
        i += i + 1 < ids.length && ids[i + 1] == 31 ? 1 : 0;
      } else {
        sb.append(t == 26 ? ' ' : (char) ('a' + t));
      }
    }
    return sb.toString();
  };

  static String feed(TextStream s, int... ids) {
    StringBuilder out = new StringBuilder();
    for (int id : ids) {
      out.append(s.add(id)).append('|');
    }
    return out.toString();
  }

  @Test
  void withoutStopsEveryCompleteCharacterIsEmittedAtOnce() {
    TextStream s = new TextStream(DECODE, List.of());
    assertEquals("a|b| |", feed(s, 0, 1, 26));
    assertEquals("|é|c|", feed(s, 30, 31, 2), "half of é waits for its second byte");
    assertEquals("", s.finish());
    assertEquals("ab éc", s.text());
  }

  @Test
  void aStopStringEndsTheTextBeforeItAndItsPrefixIsHeldBack() {
    TextStream s = new TextStream(DECODE, List.of("cd", "xyz"));
    // "a" is emitted once it cannot begin "xyz"; "c" might begin "cd" and waits; "cd" stops.
    assertEquals("||a|", feed(s, 0, 1, 2), "a, b, then c: the last two characters are held back");
    assertFalse(s.stopped());
    assertEquals("b|", feed(s, 3));
    assertTrue(s.stopped());
    assertEquals("ab", s.text());
    assertEquals("", s.finish());
  }

  @Test
  void aHeldTailThatDidNotBecomeAStopIsFlushedAtTheEnd() {
    TextStream s = new TextStream(DECODE, List.of("xyz"));
    assertEquals("||x|", feed(s, 23, 24, 0), "x and y are held while they might begin xyz; x is released once \"xya\" rules that out");
    assertEquals("ya", s.finish());
    assertEquals("xya", s.text());
    assertFalse(s.stopped());
  }

  @Test
  void theEarliestOfSeveralStopsWins() {
    TextStream s = new TextStream(DECODE, List.of("b", "ab"));
    feed(s, 0, 1);
    assertTrue(s.stopped());
    assertEquals("", s.text(), "\"ab\" begins before \"b\"");
  }
}
