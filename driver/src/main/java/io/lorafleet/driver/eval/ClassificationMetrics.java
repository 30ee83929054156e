package io.lorafleet.driver.eval;

import java.util.Arrays;
import java.util.Comparator;
import java.util.stream.IntStream;

/**
 * GLUE's metrics for a sequence classifier's predictions against gold labels, as scikit-learn and
 * scipy define them (what the LoRA paper reports): accuracy; for two classes, F1 of class 1
 * (f1_score) and Matthews correlation (matthews_corrcoef, 0 when a marginal is empty); for
 * regression, Pearson's r and Spearman's ρ (Pearson over ranks, ties taking their average rank).
 * A metric that does not apply, or has too few examples, is NaN.
 */
public record ClassificationMetrics(double accuracy, double f1, double matthews, double pearson, double spearman) {
  public static ClassificationMetrics of(float[] predicted, float[] gold, boolean regression) {
    if (predicted.length != gold.length) {
      throw new IllegalArgumentException(predicted.length + " predictions for " + gold.length + " labels");
    }
    int n = gold.length;
    if (regression) {
      return new ClassificationMetrics(Double.NaN, Double.NaN, Double.NaN, pearson(toDouble(predicted), toDouble(gold)),
          pearson(ranks(predicted), ranks(gold)));
    }
    long right = IntStream.range(0, n).filter(i -> predicted[i] == gold[i]).count();
    double accuracy = n == 0 ? Double.NaN : (double) right / n;
    boolean binary = IntStream.range(0, n).allMatch(i -> (gold[i] == 0 || gold[i] == 1) && (predicted[i] == 0 || predicted[i] == 1));
    if (!binary || n == 0) {
      return new ClassificationMetrics(accuracy, Double.NaN, Double.NaN, Double.NaN, Double.NaN);
    }
    double tp = 0;
    double fp = 0;
    double fn = 0;
    double tn = 0;
    for (int i = 0; i < n; i++) {
      boolean p = predicted[i] == 1;
      boolean g = gold[i] == 1;
      tp += p && g ? 1 : 0;
      fp += p && !g ? 1 : 0;
      fn += !p && g ? 1 : 0;
      tn += !p && !g ? 1 : 0;
    }
    double f1 = tp == 0 ? 0 : 2 * tp / (2 * tp + fp + fn);
    double denom = Math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn));
    double mcc = denom == 0 ? 0 : (tp * tn - fp * fn) / denom;
    return new ClassificationMetrics(accuracy, f1, mcc, Double.NaN, Double.NaN);
  }

  private static double[] toDouble(float[] x) {
    double[] d = new double[x.length];
    for (int i = 0; i < x.length; i++) {
      d[i] = x[i];
    }
    return d;
  }

  /** 1-based ranks, tied values sharing the mean of their ranks (scipy.stats.rankdata's "average"). */
  static double[] ranks(float[] x) {
    Integer[] order = IntStream.range(0, x.length).boxed().toArray(Integer[]::new);
    Arrays.sort(order, Comparator.comparingDouble(i -> x[i]));
    double[] r = new double[x.length];
    for (int i = 0; i < order.length;) {
      int j = i;
      while (j + 1 < order.length && x[order[j + 1]] == x[order[i]]) {
        j++;
      }
      double mean = (i + j) / 2.0 + 1;
      for (int k = i; k <= j; k++) {
        r[order[k]] = mean;
      }
      i = j + 1;
    }
    return r;
  }

  static double pearson(double[] a, double[] b) {
    int n = a.length;
    if (n < 2) {
      return Double.NaN;
    }
    double ma = Arrays.stream(a).average().orElse(0);
    double mb = Arrays.stream(b).average().orElse(0);
    double sab = 0;
    double saa = 0;
    double sbb = 0;
    for (int i = 0; i < n; i++) {
      sab += (a[i] - ma) * (b[i] - mb);
      saa += (a[i] - ma) * (a[i] - ma);
      sbb += (b[i] - mb) * (b[i] - mb);
    }
    return saa == 0 || sbb == 0 ? Double.NaN : sab / Math.sqrt(saa * sbb);
  }
}
