package io.lorafleet.driver.metrics;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The training state a driver exposes to Spark's metrics system: the last step's figures, as the
 * trainer writes them to metrics.jsonl, and the age of the last checkpoint. The trainer sets them;
 * {@link LorafleetPlugin}'s gauges read them. NaN until a run has written its first step.
 */
public final class TrainingGauges {
  /** Gauge names, as they appear after the plugin's source name in every sink. */
  public static final List<String> NAMES = List.of("step", "loss", "learning_rate", "tokens_per_second", "examples_per_second", "grad_norm", "compute_ms",
      "communication_ms", "optimizer_ms", "checkpoint_age_seconds", "workers", "resizes");

  private static final Map<String, Double> VALUES = new ConcurrentHashMap<>();
  private static volatile long checkpointNanos = Long.MIN_VALUE;

  private TrainingGauges() {}

  /** A step's metrics.jsonl line. */
  public static void step(JsonNode m) {
    VALUES.put("step", m.path("step").asDouble(Double.NaN));
    VALUES.put("loss", m.path("loss").asDouble(Double.NaN));
    VALUES.put("learning_rate", m.path("lr").asDouble(Double.NaN));
    VALUES.put("grad_norm", m.path("grad_norm").asDouble(Double.NaN));
    double ms = m.path("step_ms").asDouble(Double.NaN);
    // input tokens (padding excluded), as trainers count throughput; a classifier's rows are examples_per_second
    VALUES.put("tokens_per_second", ms > 0 && m.has("input_tokens") ? m.path("input_tokens").asDouble() / (ms / 1000) : Double.NaN);
    VALUES.put("examples_per_second", ms > 0 && m.has("examples") ? m.path("examples").asDouble() / (ms / 1000) : Double.NaN);
    for (String k : List.of("compute_ms", "communication_ms", "optimizer_ms")) {
      VALUES.put(k, m.path(k).asDouble(Double.NaN));
    }
    // the stage's worker count, and how often the run shrank or grew (--min-workers)
    VALUES.put("workers", m.path("workers").asDouble(Double.NaN));
    VALUES.merge("resizes", m.has("resized_from") ? 1.0 : 0.0, Double::sum);
  }

  /** A checkpoint was published. */
  public static void checkpointed() {
    checkpointNanos = System.nanoTime();
  }

  /** A run starts: no step, no checkpoint yet. */
  public static void reset() {
    VALUES.clear();
    checkpointNanos = Long.MIN_VALUE;
  }

  public static double value(String name) {
    if (name.equals("checkpoint_age_seconds")) {
      long at = checkpointNanos;
      return at == Long.MIN_VALUE ? Double.NaN : (System.nanoTime() - at) / 1e9;
    }
    return VALUES.getOrDefault(name, Double.NaN);
  }
}
