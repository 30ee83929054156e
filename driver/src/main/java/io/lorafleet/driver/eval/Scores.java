package io.lorafleet.driver.eval;

import java.io.Serializable;

/** Evaluation sums: target-token loss and greedy exact matches; they add across partitions. */
public record Scores(double lossSum, long tokens, long exact, long examples) implements Serializable {
  public static final Scores ZERO = new Scores(0, 0, 0, 0);

  public Scores plus(Scores o) {
    return new Scores(lossSum + o.lossSum, tokens + o.tokens, exact + o.exact, examples + o.examples);
  }

  /** Token-weighted mean loss on target tokens. */
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
