package io.lorafleet.driver.optim;

import java.util.List;

/**
 * The learning rate at an optimizer step, with transformers' definitions (optimization.py
 * get_scheduler), so that a config borrowed from transformers, Axolotl or PEFT trains the same way.
 * Step s is 0-based: the s-th update uses lr(s), as HF Trainer's scheduler is stepped after each
 * update. Warm-up rises as peak·s/warmup from 0, then:
 * <ul>
 *   <li>{@code linear}: peak·(total − s)/(total − warmup), reaching 0 at s = total;
 *   <li>{@code cosine}: peak·½(1 + cos(π·p)), p = (s − warmup)/(total − warmup);
 *   <li>{@code cosine_with_min_lr}: the cosine factor f scaled into [minLrRate, 1]: peak·(f·(1 − r) + r);
 *   <li>{@code constant}: peak at every step, warm-up ignored (get_constant_schedule);
 *   <li>{@code constant_with_warmup}: warm-up, then peak;
 *   <li>{@code warmup_stable_merge} (WSM, 2025): constant_with_warmup's rates; instead of a decay, the
 *       run's final adapter is the merge of its last checkpoints (the train package does that part).
 * </ul>
 */
public record Schedule(String kind, double peak, int warmup, int total, double minLrRate) {
  public static final List<String> KINDS = List.of("linear", "cosine", "cosine_with_min_lr", "constant", "constant_with_warmup", "warmup_stable_merge");

  /** Whether the run's final adapter is a merge of its last checkpoints rather than its last step (WSM). */
  public boolean merges() {
    return kind.equals("warmup_stable_merge");
  }

  public Schedule {
    if (!KINDS.contains(kind)) {
      throw new IllegalArgumentException("lr schedule must be one of " + String.join(", ", KINDS) + " but found '" + kind + "'");
    }
    if (!(peak > 0)) {
      throw new IllegalArgumentException("learning rate must be > 0 but found " + peak);
    }
    if (warmup < 0) {
      throw new IllegalArgumentException("warmup steps must be >= 0 but found " + warmup);
    }
    if (kind.equals("cosine_with_min_lr") ? !(minLrRate > 0 && minLrRate < 1) : minLrRate != 0) {
      throw new IllegalArgumentException("--min-lr-rate is for cosine_with_min_lr only, where it must be in (0, 1); found " + minLrRate + " with "
          + kind);
    }
  }

  public Schedule(String kind, double peak, int warmup, int total) {
    this(kind, peak, warmup, total, 0);
  }

  /** transformers' get_warmup_steps: the steps when given (> 0), else ceil(total·ratio). */
  public static int warmupSteps(int steps, double ratio, int total) {
    if (ratio < 0 || ratio >= 1) {
      throw new IllegalArgumentException("--warmup-ratio must be in [0, 1) but found " + ratio);
    }
    return steps > 0 ? steps : (int) Math.ceil(total * ratio);
  }

  /** Learning rate for 0-based {@code step}. */
  public double lr(int step) {
    if (kind.equals("constant")) {
      return peak;
    }
    if (step < warmup) {
      return peak * step / Math.max(1, warmup);
    }
    if (kind.equals("constant_with_warmup") || merges()) {
      return peak;
    }
    if (kind.equals("linear")) {
      return peak * Math.max(0, (double) (total - step) / Math.max(1, total - warmup));
    }
    double progress = (double) (step - warmup) / Math.max(1, total - warmup);
    double f = Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
    return kind.equals("cosine") ? peak * f : peak * (f * (1 - minLrRate) + minLrRate);
  }
}
