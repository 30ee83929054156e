package io.lorafleet.driver.train;

import io.lorafleet.datasets.arrow.Example;
import io.lorafleet.worker.model.Batch;
import java.util.ArrayList;
import java.util.List;

/**
 * Which examples a worker trains on at a step. The global batch of step s is examples
 * [s·G, (s+1)·G) of the split, wrapping around; worker r of N takes its contiguous G/N of them.
 * Every worker runs the same number of micro-batches every step, and the union over workers does
 * not depend on N, so N workers compute exactly the update one worker would.
 */
public final class GlobalBatch {
  private GlobalBatch() {}

  public static List<Example> slice(List<Example> all, int step, int globalBatch, int workers, int rank) {
    if (all.isEmpty()) {
      throw new IllegalArgumentException("the training split holds no examples");
    }
    int per = globalBatch / workers;
    List<Example> out = new ArrayList<>(per);
    long start = (long) step * globalBatch + (long) rank * per;
    for (int i = 0; i < per; i++) {
      out.add(all.get((int) ((start + i) % all.size())));
    }
    return out;
  }

  public static List<Batch> microBatches(List<Example> examples, int micro) {
    List<Batch> out = new ArrayList<>();
    for (int i = 0; i < examples.size(); i += micro) {
      List<Example> chunk = examples.subList(i, Math.min(examples.size(), i + micro));
      out.add(Batch.of(chunk.stream().map(Example::inputIds).toArray(int[][]::new), chunk.stream().map(Example::labels).toArray(int[][]::new)));
    }
    return out;
  }
}
