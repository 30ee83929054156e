package io.lorafleet.driver.executor;

import io.lorafleet.datasets.arrow.Example;
import io.lorafleet.datasets.arrow.SplitReader;
import java.io.IOException;
import io.lorafleet.worker.model.Batch;
import java.util.ArrayList;
import java.util.List;

/**
 * Which examples a worker trains on at a step. The global batch of step s is the rows at positions
 * [s·G, (s+1)·G) of the run's {@link EpochOrder} (epoch after epoch); worker r of N takes its
 * contiguous G/N of them. Every worker runs the same number of micro-batches every step, and the
 * union over workers does not depend on N, so N workers compute exactly the update one worker would.
 */
public final class GlobalBatch {
  private GlobalBatch() {}

  public static List<Example> slice(SplitReader split, EpochOrder order, int step, int globalBatch, int workers, int rank) {
    int per = globalBatch / workers;
    List<Example> out = new ArrayList<>(per);
    long start = firstPosition(step, globalBatch, workers, rank);
    for (int i = 0; i < per; i++) {
      long row = order.rowAt(start + i);
      try {
        out.add(split.row(row));
      } catch (IOException e) {
        throw new java.io.UncheckedIOException("step " + step + ", rank " + rank + ": cannot read row " + row + " of the training split: " + e, e);
      }
    }
    return out;
  }

  /** The position in the data order of the first row worker {@code rank} of {@code workers} trains on at {@code step}. */
  public static long firstPosition(int step, int globalBatch, int workers, int rank) {
    return (long) step * globalBatch + (long) rank * (globalBatch / workers);
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
