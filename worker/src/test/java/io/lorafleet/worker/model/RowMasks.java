package io.lorafleet.worker.model;

import java.util.HashMap;
import java.util.Map;

/**
 * The training-mode dropout masks of one row, for the float64 references: the masks {@link Dropout}
 * draws for that row's key, indexed as a reference's unpadded arrays are. Because a row's masks do not
 * depend on the rows beside it or on padding, the reference of one unpadded row sees exactly the
 * masks the model applies to that row inside a padded batch. {@link #EVAL}: no dropout.
 */
final class RowMasks {
  static final RowMasks EVAL = new RowMasks(null);

  private final Dropout dropout;
  private final Map<String, float[]> cache = new HashMap<>();

  private RowMasks(Dropout dropout) {
    this.dropout = dropout;
  }

  /** Row {@code rowKey}'s masks under {@code seed}, the model's own dropouts on. */
  static RowMasks of(long seed, long rowKey) {
    return new RowMasks(new Dropout(seed, new long[] {rowKey}, true));
  }

  private float[] mask(String site, double p, long... shape) {
    long[] full = new long[shape.length + 1];
    full[0] = 1;
    System.arraycopy(shape, 0, full, 1, shape.length);
    return cache.computeIfAbsent(site + java.util.Arrays.toString(full), k -> dropout.mask(full, Dropout.site(site), p));
  }

  /** x (T, H) times its mask at {@code site}, as the model drops a (B, T, H) tensor. */
  double[][] drop(double[][] x, String site, double p) {
    if (dropout == null || p <= 0) {
      return x;
    }
    int t = x.length;
    int h = x[0].length;
    float[] m = mask(site, p, t, h);
    double[][] y = new double[t][h];
    for (int i = 0; i < t; i++) {
      for (int j = 0; j < h; j++) {
        y[i][j] = x[i][j] * m[i * h + j];
      }
    }
    return y;
  }

  /** v (H) times its mask at {@code site}, as the model drops a (B, H) tensor (a head's input). */
  double[] dropVector(double[] v, String site, double p) {
    if (dropout == null || p <= 0) {
      return v;
    }
    float[] m = mask(site, p, v.length);
    double[] y = new double[v.length];
    for (int j = 0; j < v.length; j++) {
      y[j] = v[j] * m[j];
    }
    return y;
  }

  /** Query i's probabilities pr (T) in head {@code head} of {@code heads}, times their mask, as the model drops a (B, nh, T, T) tensor. */
  double[] dropProbs(double[] pr, String site, double p, int heads, int head, int i) {
    return dropProbs(pr, site, p, heads, head, i, pr.length);
  }

  /** As {@link #dropProbs(double[], String, double, int, int, int)} under a causal mask: pr holds keys 0..i of the row's t. */
  double[] dropProbs(double[] pr, String site, double p, int heads, int head, int i, int t) {
    if (dropout == null || p <= 0) {
      return pr;
    }
    float[] m = mask(site, p, heads, t, t);
    double[] y = new double[pr.length];
    for (int j = 0; j < pr.length; j++) {
      y[j] = pr[j] * m[(head * t + i) * t + j];
    }
    return y;
  }
}
