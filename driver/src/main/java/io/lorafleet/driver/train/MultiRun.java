package io.lorafleet.driver.train;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Function;

/**
 * What the runs of one job must share, and the job's table of runs. A multi-run job trains several
 * adapters on one base over one set of workers, a step of every active run in turn: each run may
 * set its own tuner, optimizer, schedule, seed, steps or epochs, evaluation, checkpoint cadence,
 * data, global batch and micro-batch, but the base, its quantization, the workers, the number of
 * micro-batch slots in a step (global batch / micro-batch: the slots the workers speak for) and the
 * gradient channel are the job's.
 */
public final class MultiRun {
  private static final ObjectMapper JSON = new ObjectMapper();
  /** The job's table of runs, beside their directories: runs.json. */
  public static final String TABLE = "runs.json";
  /** A run's name: a directory name, and a metrics label. */
  private static final java.util.regex.Pattern NAME = java.util.regex.Pattern.compile("[A-Za-z0-9][A-Za-z0-9_.=-]{0,99}");

  private MultiRun() {}

  /** The shared settings, by the job file's field names. */
  private static final Map<String, Function<TrainConfig, Object>> SHARED = shared();

  private static Map<String, Function<TrainConfig, Object>> shared() {
    Map<String, Function<TrainConfig, Object>> m = new LinkedHashMap<>();
    m.put("model", c -> c.io().model());
    m.put("labels", c -> c.io().labels());
    m.put("quantize", c -> c.compute().quantize());
    m.put("workers", c -> c.batching().workers());
    m.put("min-workers", c -> c.run().minWorkers());
    m.put("slots", c -> io.lorafleet.driver.executor.GlobalBatch.slots(c.batching().globalBatch(), c.batching().microBatch()));
    m.put("gradient-checkpointing", c -> c.compute().gradientCheckpointing());
    m.put("model-dropout", c -> c.compute().modelDropout());
    m.put("intra-op-threads", c -> c.compute().intraOpThreads());
    m.put("mixed-runs", c -> c.compute().mixedRuns());
    m.put("initial-loss-scale", c -> c.compute().initialLossScale());
    m.put("grad-transport", c -> c.channel().transport());
    m.put("pre-reduce", c -> c.channel().preReduce());
    m.put("gradient-ports", c -> c.channel().ports());
    m.put("timeout-ms", c -> c.run().timeoutMs());
    m.put("max-attempts", c -> c.run().maxAttempts());
    m.put("executor-wait-ms", c -> c.run().executorWaitMs());
    return m;
  }

  /** The job-level fields a run may not set (the shared ones, by name). */
  public static Set<String> sharedFields() {
    return SHARED.keySet();
  }

  /**
   * Refuses a job whose runs are not named uniquely (as directory names) or differ in a shared
   * setting, naming the run, the field and both values.
   */
  public static void checkShared(List<Trainer.Named> runs) {
    if (runs.size() == 1 && runs.get(0).name().isEmpty()) {
      return;
    }
    Set<String> seen = new HashSet<>();
    for (Trainer.Named r : runs) {
      if (!NAME.matcher(r.name()).matches()) {
        throw new IllegalArgumentException("run name '" + r.name() + "' is not a directory name of letters, digits and _ . = - (up to 100, "
            + "starting with a letter or digit)");
      }
      if (!seen.add(r.name())) {
        throw new IllegalArgumentException("two runs are named '" + r.name() + "'; each run writes runs/<name>/, so names must differ");
      }
    }
    Trainer.Named first = runs.get(0);
    for (Trainer.Named r : runs.subList(1, runs.size())) {
      for (Map.Entry<String, Function<TrainConfig, Object>> f : SHARED.entrySet()) {
        Object a = f.getValue().apply(first.cfg());
        Object b = f.getValue().apply(r.cfg());
        if (!a.equals(b)) {
          if (f.getKey().equals("slots")) {
            throw new IllegalArgumentException("run " + r.name() + " has " + b + " micro-batch slots a step (global batch " + r.cfg().batching().globalBatch()
                + " / micro-batch " + r.cfg().batching().microBatch() + ") but run " + first.name() + " has " + a + " (" + first.cfg().batching().globalBatch()
                + " / " + first.cfg().batching().microBatch() + "); the runs of a job may differ in global batch only with the micro-batch in proportion, "
                + "since the workers share out a step's slots");
          }
          throw new IllegalArgumentException("run " + r.name() + " sets " + f.getKey() + " " + b + " but run " + first.name() + " has " + a
              + "; every run of a job shares " + String.join(", ", SHARED.keySet()));
        }
      }
    }
  }

  /** Writes {@code out}/runs.json (any Hadoop filesystem URI): each run's name, status, steps run, final loss and why it ended early. */
  public static void writeTable(String out, org.apache.hadoop.conf.Configuration conf, List<Trainer.Named> runs, List<Trainer.Result> results)
      throws IOException {
    ArrayNode table = JSON.createArrayNode();
    for (int i = 0; i < runs.size(); i++) {
      ObjectNode row = table.addObject();
      Trainer.Result r = results.get(i);
      row.put("name", runs.get(i).name());
      row.put("status", r.status());
      row.put("steps", r.losses().size());
      row.put("final_loss", r.losses().isEmpty() ? Double.NaN : r.losses().get(r.losses().size() - 1));
      if (!r.why().isEmpty()) {
        row.put("why", r.why());
      }
      row.put("dir", "runs/" + runs.get(i).name());
    }
    org.apache.hadoop.fs.Path p = new org.apache.hadoop.fs.Path(out.replaceAll("/+$", "") + "/" + TABLE);
    try (var o = p.getFileSystem(conf).create(p, true)) {
      o.write(JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(table));
    }
  }
}
