package io.lorafleet.driver.eval;

import java.io.Serializable;

/**
 * Evaluation sums: target-token loss and greedy exact matches for a causal LM; for a sequence
 * classifier, the loss summed over examples and each example's prediction and gold label (what
 * its metrics are computed from). They add across partitions.
 */
public record Scores(double lossSum, long tokens, long exact, long examples, float[] predicted, float[] gold, boolean regression) implements Serializable {
  public static final Scores ZERO = new Scores(0, 0, 0, 0);

  /** A causal LM's scores. */
  public Scores(double lossSum, long tokens, long exact, long examples) {
    this(lossSum, tokens, exact, examples, new float[0], new float[0], false);
  }

  public Scores plus(Scores o) {
    return new Scores(lossSum + o.lossSum, tokens + o.tokens, exact + o.exact, examples + o.examples, concat(predicted, o.predicted), concat(gold, o.gold),
        regression || o.regression);
  }

  private static float[] concat(float[] a, float[] b) {
    float[] out = java.util.Arrays.copyOf(a, a.length + b.length);
    System.arraycopy(b, 0, out, a.length, b.length);
    return out;
  }

  /** Whether these are a sequence classifier's scores. */
  public boolean classification() {
    return gold.length > 0;
  }

  /** The classifier's metrics (accuracy, F1, Matthews; Pearson and Spearman for regression). */
  public ClassificationMetrics metrics() {
    return ClassificationMetrics.of(predicted, gold, regression);
  }

  /** Mean loss: per target token for a causal LM, per example for a classifier. */
  public double loss() {
    return tokens == 0 ? Double.NaN : lossSum / tokens;
  }

  public double perplexity() {
    return Math.exp(loss());
  }

  public double exactMatch() {
    return examples == 0 ? Double.NaN : (double) exact / examples;
  }
}
