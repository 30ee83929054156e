package io.lorafleet.driver.metrics;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The training state a driver exposes to Spark's metrics system: the last step's figures, as the
 * trainer writes them to metrics.jsonl, and the age of the last checkpoint. The trainer sets them;
 * {@link LorafleetPlugin}'s gauges read them. NaN until a run has written its first step. In a
 * multi-run job the unprefixed gauges hold the last step of any run, and each run has the same
 * gauges under {@code run.<name>.}, registered as it takes its first step.
 */
public final class TrainingGauges {
  /** Gauge names, as they appear after the plugin's source name in every sink. */
  public static final List<String> NAMES = List.of("step", "loss", "learning_rate", "tokens_per_second", "examples_per_second", "grad_norm", "compute_ms",
      "communication_ms", "optimizer_ms", "checkpoint_age_seconds", "workers", "resizes");

  private static final Map<String, Double> VALUES = new ConcurrentHashMap<>();
  /** When each prefix ("" and each run's "run.<name>.") last published a checkpoint. */
  private static final Map<String, Long> CHECKPOINTS = new ConcurrentHashMap<>();
  private static final java.util.Set<String> RUNS = ConcurrentHashMap.newKeySet();
  private static volatile java.util.function.Consumer<String> registrar = name -> {};

  private TrainingGauges() {}

  /** Where a run's own gauges go: the plugin registers each name it is handed. */
  public static void registerWith(java.util.function.Consumer<String> r) {
    registrar = r;
    RUNS.forEach(run -> NAMES.forEach(n -> r.accept(prefix(run) + n)));
  }

  private static String prefix(String run) {
    return run.isEmpty() ? "" : "run." + run + ".";
  }

  /** A step's metrics.jsonl line, of run {@code run} (empty for a plain train). */
  public static void step(String run, JsonNode m) {
    put("", m);
    if (!run.isEmpty()) {
      put(prefix(run), m);
      if (RUNS.add(run)) {
        NAMES.forEach(n -> registrar.accept(prefix(run) + n));
      }
    }
  }

  private static void put(String p, JsonNode m) {
    VALUES.put(p + "step", m.path("step").asDouble(Double.NaN));
    VALUES.put(p + "loss", m.path("loss").asDouble(Double.NaN));
    VALUES.put(p + "learning_rate", m.path("lr").asDouble(Double.NaN));
    VALUES.put(p + "grad_norm", m.path("grad_norm").asDouble(Double.NaN));
    double ms = m.path("step_ms").asDouble(Double.NaN);
    // input tokens (padding excluded), as trainers count throughput; a classifier's rows are examples_per_second
    VALUES.put(p + "tokens_per_second", ms > 0 && m.has("input_tokens") ? m.path("input_tokens").asDouble() / (ms / 1000) : Double.NaN);
    VALUES.put(p + "examples_per_second", ms > 0 && m.has("examples") ? m.path("examples").asDouble() / (ms / 1000) : Double.NaN);
    for (String k : List.of("compute_ms", "communication_ms", "optimizer_ms")) {
      VALUES.put(p + k, m.path(k).asDouble(Double.NaN));
    }
    // the stage's worker count, and how often the run shrank or grew (--min-workers)
    VALUES.put(p + "workers", m.path("workers").asDouble(Double.NaN));
    VALUES.merge(p + "resizes", m.has("resized_from") ? 1.0 : 0.0, Double::sum);
  }

  /** A checkpoint of run {@code run} (empty for a plain train) was published. */
  public static void checkpointed(String run) {
    long now = System.nanoTime();
    CHECKPOINTS.put("", now);
    CHECKPOINTS.put(prefix(run), now);
  }

  /** A job starts: no step, no checkpoint yet. */
  public static void reset() {
    VALUES.clear();
    CHECKPOINTS.clear();
  }

  public static double value(String name) {
    if (name.endsWith("checkpoint_age_seconds")) {
      Long at = CHECKPOINTS.get(name.substring(0, name.length() - "checkpoint_age_seconds".length()));
      return at == null ? Double.NaN : (System.nanoTime() - at) / 1e9;
    }
    return VALUES.getOrDefault(name, Double.NaN);
  }
}
