package io.lorafleet.driver.executor;

import io.lorafleet.datasets.arrow.Example;
import io.lorafleet.driver.allreduce.SumTree;
import io.lorafleet.datasets.arrow.SplitReader;
import java.io.IOException;
import io.lorafleet.worker.model.Batch;
import java.util.ArrayList;
import java.util.List;

/**
 * Which examples a worker trains on at a step. The global batch of step s is the rows at positions
 * [s·G, (s+1)·G) of the run's {@link EpochOrder} (epoch after epoch), cut into S = G/m slots of one
 * micro-batch each: slot j holds positions [s·G + j·m, s·G + (j+1)·m). The slots, their rows and
 * their padding depend on the data order alone; worker r of N computes the contiguous share [⌊r·S/N⌋,
 * ⌊(r+1)·S/N⌋) of them, one micro-batch a slot, and the slot gradients are added over {@link SumTree},
 * so the update is bit-identical for every N from 1 to S (shares differ by at most one slot when N
 * does not divide S).
 */
public final class GlobalBatch {
  private GlobalBatch() {}

  /** The slots of a global batch: micro-batches of {@code micro} rows. */
  public static int slots(int globalBatch, int micro) {
    if (micro <= 0 || globalBatch % micro != 0) {
      throw new IllegalArgumentException("--global-batch (" + globalBatch + ") must be a multiple of --micro-batch (" + micro + ")");
    }
    return globalBatch / micro;
  }

  /** The slots worker {@code rank} of {@code workers} computes: [⌊rank·S/N⌋, ⌊(rank+1)·S/N⌋). */
  public static SumTree.Node share(int slots, int workers, int rank) {
    if (workers < 1 || workers > slots || rank < 0 || rank >= workers) {
      throw new IllegalArgumentException("rank " + rank + " of " + workers + " workers cannot share " + slots + " slots: expected 1 <= workers <= slots");
    }
    return new SumTree.Node((int) firstSlot(slots, workers, rank), (int) firstSlot(slots, workers, rank + 1));
  }

  /** ⌊rank·S/N⌋: where worker {@code rank}'s share of {@code slots} begins (rank N: the end). Shares may be empty when N > S. */
  public static long firstSlot(long slots, int workers, int rank) {
    return rank * slots / workers;
  }

  /** The examples of {@code slots} of step {@code step}, in slot order. */
  public static List<Example> slice(SplitReader split, EpochOrder order, int step, int globalBatch, int micro, SumTree.Node slots) {
    List<Example> out = new ArrayList<>(slots.size() * micro);
    long start = firstPosition(step, globalBatch, micro, slots.lo());
    for (int i = 0; i < slots.size() * micro; i++) {
      long row = order.rowAt(start + i);
      try {
        out.add(split.row(row));
      } catch (IOException e) {
        throw new java.io.UncheckedIOException("step " + step + ", " + slots + ": cannot read row " + row + " of the training split: " + e, e);
      }
    }
    return out;
  }

  /** The whole global batch of step {@code step}. */
  public static List<Example> slice(SplitReader split, EpochOrder order, int step, int globalBatch) {
    return slice(split, order, step, globalBatch, 1, SumTree.root(globalBatch));
  }

  /** The position in the data order of the first row of slot {@code slot} at {@code step}. */
  public static long firstPosition(int step, int globalBatch, int micro, int slot) {
    return (long) step * globalBatch + (long) slot * micro;
  }

  /** As {@link #microBatches(List, int, long)}, the rows keyed from 0 (validation, tests). */
  public static List<Batch> microBatches(List<Example> examples, int micro) {
    return microBatches(examples, micro, 0);
  }

  /**
   * The examples in micro-batches of {@code micro} rows, each row keyed for its dropout masks by its
   * position in the data order: {@code first} for the first example, and on.
   */
  public static List<Batch> microBatches(List<Example> examples, int micro, long first) {
    List<Batch> out = new ArrayList<>();
    for (int i = 0; i < examples.size(); i += micro) {
      List<Example> chunk = examples.subList(i, Math.min(examples.size(), i + micro));
      int[][] ids = chunk.stream().map(Example::inputIds).toArray(int[][]::new);
      int[][] labels = chunk.stream().map(Example::labels).toArray(int[][]::new);
      if (chunk.stream().anyMatch(e -> e.label().isPresent())) { // sequence classification: one label per row
        float[] y = new float[chunk.size()];
        for (int k = 0; k < y.length; k++) {
          y[k] = chunk.get(k).label().orElseThrow();
        }
        out.add(Batch.classification(ids, chunk.stream().map(Example::tokenTypes).toArray(int[][]::new), y).withRowKeys(first + i));
      } else if (chunk.stream().anyMatch(e -> e.positionIds().isPresent())) {
        out.add(packed(chunk).withRowKeys(first + i));
      } else {
        out.add(Batch.of(ids, labels).withRowKeys(first + i));
      }
    }
    return out;
  }

  /**
   * Packed rows, right-padded to one length. Padding gets label -100 and position 0, so each pad
   * token is a segment of its own and attends to nothing real.
   */
  static Batch packed(List<Example> rows) {
    int t = rows.stream().mapToInt(e -> e.inputIds().length).max().orElse(0);
    int[][] ids = new int[rows.size()][t];
    int[][] labels = new int[rows.size()][t];
    int[][] pos = new int[rows.size()][t];
    for (int r = 0; r < rows.size(); r++) {
      Example e = rows.get(r);
      int[] p = e.positionIds().orElseGet(() -> java.util.stream.IntStream.range(0, e.inputIds().length).toArray());
      java.util.Arrays.fill(labels[r], Batch.IGNORE);
      System.arraycopy(e.inputIds(), 0, ids[r], 0, e.inputIds().length);
      System.arraycopy(e.labels(), 0, labels[r], 0, e.labels().length);
      System.arraycopy(p, 0, pos[r], 0, p.length);
    }
    return Batch.packed(ids, labels, pos);
  }
}
