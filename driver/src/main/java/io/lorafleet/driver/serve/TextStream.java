package io.lorafleet.driver.serve;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;

/**
 * Generated tokens as text, for streaming. The tokens so far are decoded whole each time, so that
 * characters spread over several tokens (byte-level BPE) and tokenizers that join pieces come out
 * right; text is emitted only once it is final: never a trailing incomplete character (decoded as
 * U+FFFD) and never a tail that could still begin a stop string. A stop string ends the text just
 * before it, and is not part of it (OpenAI's {@code stop}).
 */
final class TextStream {
  private final Function<int[], String> decode;
  private final List<String> stops;
  private final int hold;
  private final List<Integer> ids = new ArrayList<>();
  private String text = "";
  private String emitted = "";
  private boolean stopped;

  TextStream(Function<int[], String> decode, List<String> stops) {
    this.decode = decode;
    this.stops = List.copyOf(stops);
    this.hold = stops.stream().mapToInt(String::length).max().orElse(1) - 1;
  }

  /** Adds a generated token and returns the text that became final with it (often empty). */
  String add(int id) {
    if (stopped) {
      throw new IllegalStateException("the text already ended at a stop string");
    }
    ids.add(id);
    text = decode.apply(ids.stream().mapToInt(Integer::intValue).toArray());
    int cut = -1;
    for (String s : stops) {
      int at = text.indexOf(s);
      if (at >= 0 && (cut < 0 || at < cut)) {
        cut = at;
      }
    }
    if (cut >= 0) {
      stopped = true;
      text = text.substring(0, cut);
      return emit(text.length());
    }
    int safe = text.length();
    while (safe > 0 && text.charAt(safe - 1) == '\uFFFD') {
      safe--;
    }
    return emit(Math.min(safe, text.length() - hold));
  }

  /** The rest of the text, once generation has ended. */
  String finish() {
    return emit(text.length());
  }

  /** Whether a stop string ended the text. */
  boolean stopped() {
    return stopped;
  }

  /** All text so far (cut before a stop string), emitted or not. */
  String text() {
    return text;
  }

  private String emit(int upTo) {
    // The text is decoded anew each time; emit only while it extends what was already sent.
    if (upTo <= emitted.length() || !text.startsWith(emitted)) {
      return "";
    }
    String delta = text.substring(emitted.length(), upTo);
    emitted = text.substring(0, upTo);
    return delta;
  }
}
