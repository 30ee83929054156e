package io.lorafleet.driver.train;

import io.lorafleet.worker.lora.LoraConfig;
import java.io.Serializable;
import java.util.Arrays;
import java.util.List;

/**
 * A training job, validated at construction. {@code globalBatch} examples make one step; each of
 * the {@code workers} takes globalBatch/workers of them, in micro-batches of {@code microBatch}.
 */
public record TrainConfig(
    String model,
    String data,
    String output,
    String targetModules,
    int rank,
    double alpha,
    double dropout,
    int workers,
    int steps,
    int globalBatch,
    int microBatch,
    double lr,
    int warmup,
    String schedule,
    String optimizer,
    double weightDecay,
    double clip,
    int checkpointEvery,
    int keepCheckpoints,
    long seed,
    int timeoutMs,
    int maxAttempts,
    boolean resume,
    String initAdapter,
    int evalEvery,
    int evalExamples,
    int averageLast,
    String averageMode) implements Serializable {

  public TrainConfig {
    positive("r", rank);
    positive("workers", workers);
    positive("steps", steps);
    positive("global-batch", globalBatch);
    positive("micro-batch", microBatch);
    positive("checkpoint-every", checkpointEvery);
    positive("keep-checkpoints", keepCheckpoints);
    positive("timeout-ms", timeoutMs);
    positive("max-attempts", maxAttempts);
    if (globalBatch % workers != 0) {
      throw new IllegalArgumentException("--global-batch (" + globalBatch + ") must be a multiple of --workers (" + workers + ")");
    }
    if (evalEvery < 0 || evalExamples < 0 || averageLast < 0) {
      throw new IllegalArgumentException("--eval-every, --eval-examples and --average-last must be >= 0 (0 disables)");
    }
    if (!List.of("factor", "cat", "svd").contains(averageMode)) {
      throw new IllegalArgumentException("--average-mode must be factor, cat or svd but found '" + averageMode + "'");
    }
    if (!List.of("adamw", "sgd").contains(optimizer)) {
      throw new IllegalArgumentException("--optimizer must be adamw or sgd but found '" + optimizer + "'");
    }
    if (clip < 0) {
      throw new IllegalArgumentException("--clip must be >= 0 (0 disables) but found " + clip);
    }
    toLora(targetModules, rank, alpha, dropout, model); // validates r, alpha, dropout and target names
  }

  private static void positive(String f, int v) {
    if (v <= 0) {
      throw new IllegalArgumentException("--" + f + " must be > 0 but found " + v);
    }
  }

  public LoraConfig lora() {
    return toLora(targetModules, rank, alpha, dropout, model);
  }

  private static LoraConfig toLora(String targetModules, int rank, double alpha, double dropout, String model) {
    List<String> targets = Arrays.stream(targetModules.split(",")).map(String::trim).filter(s -> !s.isEmpty()).toList();
    return LoraConfig.of(rank, alpha, targets).withDropout(dropout).withBaseModel(model);
  }

  /** The same job with validation loss every {@code every} steps. */
  public TrainConfig withEval(int every) {
    return new TrainConfig(model, data, output, targetModules, rank, alpha, dropout, workers, steps, globalBatch, microBatch, lr, warmup, schedule,
        optimizer, weightDecay, clip, checkpointEvery, keepCheckpoints, seed, timeoutMs, maxAttempts, resume, initAdapter, every, Math.max(1, evalExamples),
        averageLast, averageMode);
  }
}
