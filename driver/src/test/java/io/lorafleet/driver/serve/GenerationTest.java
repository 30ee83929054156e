package io.lorafleet.driver.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lorafleet.worker.generate.Sampling;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.Test;

/**
 * A row ends at the end of its context with finish_reason "length", whatever max_tokens it carries:
 * the decode loop's own bound, under the request checks, so that no path decodes past the context.
 */
class GenerationTest {
  static Generation row(int[] prompt, int maxNew, int context) {
    return new Generation(1, "base", Optional.empty(), prompt, new Sampling(maxNew, 0, 1, 0), Optional.of(7),
        new TextStream(TextStreamTest.DECODE, List.of()), Instant.EPOCH, context);
  }

  @Test
  void aRowAskingForMoreThanTheContextEndsWithLengthAtTheContext() {
    Generation g = row(new int[] {1, 2, 3}, Integer.MAX_VALUE, 10);
    assertEquals(10, g.reservation(), "it reserves what the context leaves, not what it asked");
    float[] logits = new float[8];
    logits[0] = 1; // always 'a', never the EOS (7)
    int steps = 0;
    while (g.next(logits).isPresent()) {
      steps++;
      assertTrue(steps < 100, "the row did not end");
    }
    assertTrue(g.events.stream().noneMatch(e -> e instanceof Generation.Done), "the last event waits until the scheduler has released the row");
    g.deliverEnd(); // what the scheduler does once it has let go of the row's KV reservation and adapter
    List<Generation.Event> events = new ArrayList<>(g.events);
    Generation.Done done = (Generation.Done) events.get(events.size() - 1);
    assertEquals("length", done.finishReason());
    assertEquals(7, done.completionTokens(), "3 prompt tokens and 7 generated fill the context of 10");
    assertEquals("aaaaaaa", done.text());
  }

  @Test
  void aPromptThatFillsTheContextIsNoRow() {
    assertThrows(IllegalArgumentException.class, () -> row(new int[] {1, 2, 3}, 1, 3));
  }
}
