package io.lorafleet.driver.train;

import java.io.Serializable;

/**
 * transformers' TrainingArguments for the optimizer and schedule that lorafleet's first flags left
 * fixed: Adam's betas and epsilon, a warm-up given as a fraction of the steps, and the floor of
 * {@code cosine_with_min_lr} (lr_scheduler_kwargs' min_lr_rate).
 */
public record OptimizerOptions(double adamBeta1, double adamBeta2, double adamEpsilon, double warmupRatio, double minLrRate) implements Serializable {
  public static final OptimizerOptions DEFAULT = new OptimizerOptions(0.9, 0.999, 1e-8, 0, 0);

  public OptimizerOptions {
    if (!(adamBeta1 >= 0 && adamBeta1 < 1) || !(adamBeta2 >= 0 && adamBeta2 < 1)) {
      throw new IllegalArgumentException("--adam-beta1 and --adam-beta2 must be in [0, 1) but found " + adamBeta1 + " and " + adamBeta2);
    }
    if (!(adamEpsilon > 0)) {
      throw new IllegalArgumentException("--adam-epsilon must be > 0 but found " + adamEpsilon);
    }
    if (!(warmupRatio >= 0 && warmupRatio < 1)) {
      throw new IllegalArgumentException("--warmup-ratio must be in [0, 1) but found " + warmupRatio);
    }
    if (!(minLrRate >= 0 && minLrRate < 1)) {
      throw new IllegalArgumentException("--min-lr-rate must be in [0, 1) but found " + minLrRate);
    }
  }
}
