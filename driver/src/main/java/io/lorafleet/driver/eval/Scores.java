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

  /** Each candidate's scores added over the lists, in their order (each list holds every candidate's, in one order). */
  public static java.util.List<Scores> sumEach(java.util.List<java.util.List<Scores>> lists) {
    java.util.List<Scores> sum = new java.util.ArrayList<>();
    for (java.util.List<Scores> x : lists) {
      for (int c = 0; c < x.size(); c++) {
        if (sum.size() <= c) {
          sum.add(x.get(c));
        } else {
          sum.set(c, sum.get(c).plus(x.get(c)));
        }
      }
    }
    return sum;
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

  /**
   * Candidates' scores as bytes, for the gradient channel: their count, then for each the loss sum,
   * tokens, exact matches and examples, whether it regresses, and its predictions and gold labels.
   */
  public static byte[] encodeAll(java.util.List<Scores> all) {
    int bytes = 4;
    for (Scores s : all) {
      bytes += 8 * 4 + 1 + 4 + 8 * s.predicted.length;
    }
    java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(bytes).putInt(all.size());
    for (Scores s : all) {
      b.putDouble(s.lossSum).putLong(s.tokens).putLong(s.exact).putLong(s.examples).put((byte) (s.regression ? 1 : 0)).putInt(s.predicted.length);
      for (int i = 0; i < s.predicted.length; i++) {
        b.putFloat(s.predicted[i]).putFloat(s.gold[i]);
      }
    }
    return b.array();
  }

  /** What {@link #encodeAll} wrote; a count or a length that does not fit the bytes is refused. */
  public static java.util.List<Scores> decodeAll(byte[] bytes) {
    java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(bytes);
    try {
      int n = b.getInt();
      if (n < 0 || n > bytes.length) {
        throw new IllegalArgumentException("scores: a count of " + n + " candidates in " + bytes.length + " bytes");
      }
      java.util.List<Scores> out = new java.util.ArrayList<>();
      for (int c = 0; c < n; c++) {
        double loss = b.getDouble();
        long tokens = b.getLong();
        long exact = b.getLong();
        long examples = b.getLong();
        boolean regression = b.get() != 0;
        int rows = b.getInt();
        if (rows < 0 || rows > b.remaining() / 8) {
          throw new IllegalArgumentException("scores: " + rows + " predictions in " + b.remaining() + " bytes");
        }
        float[] predicted = new float[rows];
        float[] gold = new float[rows];
        for (int i = 0; i < rows; i++) {
          predicted[i] = b.getFloat();
          gold[i] = b.getFloat();
        }
        out.add(new Scores(loss, tokens, exact, examples, predicted, gold, regression));
      }
      if (b.hasRemaining()) {
        throw new IllegalArgumentException("scores: " + b.remaining() + " bytes left over");
      }
      return out;
    } catch (java.nio.BufferUnderflowException e) {
      throw new IllegalArgumentException("scores: " + bytes.length + " bytes end inside a candidate's scores");
    }
  }
}
