package io.lorafleet.datasets.prepare;

import io.lorafleet.datasets.arrow.Example;
import io.lorafleet.worker.model.Batch;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;

/**
 * --pack: consecutive examples of a shard (in shuffled order) share a row of at most {@code len} tokens.
 * Position ids restart at 0 for each example, which is what keeps attention inside it (the model
 * derives segments from the restarts), and the first label of every example is -100 so that no
 * loss predicts one example from the end of the previous one.
 */
final class Packing {
  private Packing() {}

  /** Packs lazily: holds one row's examples at a time. */
  static Iterator<Prepare.Out> pack(Iterator<Prepare.Out> ordered, int len) {
    return new Iterator<>() {
      private Prepare.Out pending = ordered.hasNext() ? ordered.next() : null;

      @Override
      public boolean hasNext() {
        return pending != null;
      }

      @Override
      public Prepare.Out next() {
        if (pending == null) {
          throw new NoSuchElementException();
        }
        List<Prepare.Out> bin = new ArrayList<>();
        int used = 0;
        while (pending != null && (bin.isEmpty() || used + pending.example().inputIds().length <= len)) {
          bin.add(pending);
          used += pending.example().inputIds().length;
          pending = ordered.hasNext() ? ordered.next() : null;
        }
        return row(bin);
      }
    };
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
        labels[k] = i == 0 ? Batch.IGNORE : e.labels()[i];
        pos[k] = i;
        k++;
      }
      truncated |= o.truncated();
    }
    Prepare.Out first = bin.get(0);
    return new Prepare.Out(first.key(), first.val(), new Example(ids, labels, pos), truncated, first.file(), first.line(), null);
  }
}
