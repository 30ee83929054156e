package io.lorafleet.datasets.prepare;

import io.lorafleet.datasets.arrow.Example;
import java.util.ArrayList;
import java.util.List;

/**
 * --pack: consecutive examples (in shuffled order) share a row of at most {@code len} tokens.
 * Position ids restart at 0 for each example, which is what keeps attention inside it (the model
 * derives segments from the restarts), and the first label of every example is -100 so that no
 * loss predicts one example from the end of the previous one.
 */
final class Packing {
  private Packing() {}

  static List<Prepare.Out> pack(List<Prepare.Out> ordered, int len) {
    List<Prepare.Out> rows = new ArrayList<>();
    List<Prepare.Out> bin = new ArrayList<>();
    int used = 0;
    for (Prepare.Out o : ordered) {
      int n = o.example().inputIds().length;
      if (used + n > len && !bin.isEmpty()) {
        rows.add(row(bin));
        bin = new ArrayList<>();
        used = 0;
      }
      bin.add(o);
      used += n;
    }
    if (!bin.isEmpty()) {
      rows.add(row(bin));
    }
    return rows;
  }

  private static Prepare.Out row(List<Prepare.Out> bin) {
    int total = bin.stream().mapToInt(o -> o.example().inputIds().length).sum();
    int[] ids = new int[total];
    int[] labels = new int[total];
    int[] pos = new int[total];
    int k = 0;
    boolean truncated = false;
    for (Prepare.Out o : bin) {
      Example e = o.example();
      for (int i = 0; i < e.inputIds().length; i++) {
        ids[k] = e.inputIds()[i];
        labels[k] = i == 0 ? -100 : e.labels()[i];
        pos[k] = i;
        k++;
      }
      truncated |= o.truncated();
    }
    Prepare.Out first = bin.get(0);
    return new Prepare.Out(first.key(), first.val(), new Example(ids, labels, pos), truncated, first.file(), first.line(), null);
  }
}
