package io.lorafleet.driver.serve;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;

/**
 * Generated tokens as text, for streaming, decoded incrementally (as TGI and vLLM do): each token
 * decodes a short window, ids[prefix:], against the same window without its newest tokens,
 * ids[prefix:read], and the difference is the new text; so characters spread over several tokens
 * (byte-level BPE) and tokenizers that strip a leading space at the start of a decode come out as a
 * whole decode gives them, at a cost that does not grow with the length of the generation. Text is
 * emitted only once it is final: never half a character (decoded as U+FFFD, held until the rest
 * arrives) and never a tail that could still begin a stop string. A stop string ends the text just
 * before it, and is not part of it (OpenAI's {@code stop}).
 */
final class TextStream {
  private final Function<int[], String> decode;
  private final List<String> stops;
  private final int hold;
  private final int longestStop;
  private final List<Integer> ids = new ArrayList<>();
  private int prefix;
  private int read;
  private String text = "";
  private int emitted;
  private boolean stopped;

  TextStream(Function<int[], String> decode, List<String> stops) {
    this.decode = decode;
    this.stops = List.copyOf(stops);
    this.longestStop = stops.stream().mapToInt(String::length).max().orElse(1);
    this.hold = longestStop - 1;
  }

  /** Adds a generated token and returns the text that became final with it (often empty). */
  String add(int id) {
    if (stopped) {
      throw new IllegalStateException("the text already ended at a stop string");
    }
    ids.add(id);
    int searched = text.length();
    settle(false);
    // Only the new text, and the tail before it that a stop string could start in, can hold a new match.
    int from = Math.max(0, searched - longestStop + 1);
    int cut = -1;
    for (String s : stops) {
      int at = text.indexOf(s, from);
      if (at >= 0 && (cut < 0 || at < cut)) {
        cut = at;
      }
    }
    if (cut >= 0) {
      stopped = true;
      text = text.substring(0, cut);
      return emit(text.length());
    }
    return emit(text.length() - hold);
  }

  /** The rest of the text, once generation has ended (a half character left at the end included, as a whole decode gives it). */
  String finish() {
    if (!stopped) {
      settle(true);
    }
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

  /** Appends the text the tokens since {@code read} complete; with {@code last}, even an incomplete character. */
  private void settle(boolean last) {
    if (read == ids.size()) {
      return;
    }
    String before = window(prefix, read);
    String after = window(prefix, ids.size());
    if (after.length() > before.length() && (last || !after.endsWith("\uFFFD"))) {
      text += after.substring(before.length());
      prefix = read;
      read = ids.size();
    }
  }

  private String window(int from, int to) {
    return from == to ? "" : decode.apply(ids.subList(from, to).stream().mapToInt(Integer::intValue).toArray());
  }

  private String emit(int upTo) {
    if (upTo <= emitted) {
      return "";
    }
    String delta = text.substring(emitted, upTo);
    emitted = upTo;
    return delta;
  }
}
