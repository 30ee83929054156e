package io.lorafleet.driver.average;

import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

/**
 * PEFT's task-tensor combinations (utils/merge_utils.py), elementwise over n tensors of one shape,
 * flattened:
 * <ul>
 *   <li>{@code linear}: Σ w_i·t_i;
 *   <li>{@code magnitude_prune}: each t_i keeps its top ⌊density·size⌋ entries by |x| (ties: the lower
 *       index first), then Σ w_i·t_i;
 *   <li>{@code ties} (Yadav et al. 2023): magnitude pruning, a sign elected per entry on the unweighted
 *       pruned tensors ({@code total}: the sign of Σ t_i, ≥ 0 counting as +; {@code frequency}: of
 *       Σ sign(t_i)), then the mean of w_i·t_i over the tensors whose sign agrees (at least 1);
 *   <li>{@code dare_linear} (Yu et al. 2023): each entry dropped with probability 1 − density and the
 *       rest divided by density, then Σ w_i·t_i; {@code dare_ties}: that drop, then TIES' election and
 *       disjoint mean.
 * </ul>
 * DARE draws one uniform per entry from {@code rng}, tensor after tensor, in order; density ≥ 1
 * keeps every tensor as it is (PEFT warns and does the same).
 */
final class TaskMerge {
  static final List<String> TYPES = List.of("linear", "ties", "dare_linear", "dare_ties", "magnitude_prune");

  private TaskMerge() {}

  static double[] combine(String type, List<double[]> tensors, double[] weights, double density, String signMethod, SplittableRandom rng) {
    if (!(density >= 0)) {
      throw new IllegalArgumentException("--density must be >= 0 but found " + density);
    }
    List<double[]> t = switch (type) {
      case "linear" -> tensors;
      case "ties", "magnitude_prune" -> tensors.stream().map(x -> magnitudePrune(x, density)).toList();
      case "dare_linear", "dare_ties" -> tensors.stream().map(x -> randomPrune(x, density, rng)).toList();
      default -> throw new IllegalArgumentException("unknown combination type '" + type + "', expected one of " + TYPES);
    };
    return type.endsWith("ties") ? disjointMerge(t, weights, electSign(t, signMethod)) : weightedSum(t, weights);
  }

  /**
   * Keeps the k = ⌊density·n⌋ entries of largest |x| (PEFT's magnitude pruning); among equal
   * magnitudes at the threshold, the lowest indices. The threshold comes from a sort of the
   * magnitudes as primitives, not of boxed indices.
   */
  static double[] magnitudePrune(double[] x, double density) {
    if (density >= 1) {
      return x.clone();
    }
    int k = (int) (density * x.length);
    double[] out = new double[x.length];
    if (k == 0) {
      return out;
    }
    double[] mags = new double[x.length];
    for (int i = 0; i < x.length; i++) {
      mags[i] = Math.abs(x[i]);
    }
    Arrays.sort(mags);
    double threshold = mags[x.length - k]; // the k-th largest magnitude
    int above = 0;
    for (double m : mags) {
      above += m > threshold ? 1 : 0;
    }
    int atThreshold = k - above; // how many of the entries equal to the threshold are kept, lowest index first
    for (int i = 0; i < x.length; i++) {
      double m = Math.abs(x[i]);
      if (m > threshold || m == threshold && atThreshold-- > 0) {
        out[i] = x[i];
      }
    }
    return out;
  }

  static double[] randomPrune(double[] x, double density, SplittableRandom rng) {
    if (density >= 1) {
      return x.clone();
    }
    double[] out = new double[x.length];
    for (int i = 0; i < x.length; i++) {
      out[i] = rng.nextDouble() < density ? x[i] / density : 0;
    }
    return out;
  }

  /** +1 or −1 per entry. */
  static int[] electSign(List<double[]> t, String method) {
    if (!method.equals("total") && !method.equals("frequency")) {
      throw new IllegalArgumentException("--majority-sign-method must be total or frequency but found '" + method + "'");
    }
    int[] sign = new int[t.get(0).length];
    for (int j = 0; j < sign.length; j++) {
      double s = 0;
      for (double[] x : t) {
        s += method.equals("total") ? x[j] : Math.signum(x[j]);
      }
      sign[j] = s >= 0 ? 1 : -1;
    }
    return sign;
  }

  static double[] disjointMerge(List<double[]> t, double[] w, int[] elected) {
    double[] out = new double[elected.length];
    for (int j = 0; j < out.length; j++) {
      double sum = 0;
      int kept = 0;
      for (int i = 0; i < t.size(); i++) {
        if (Math.signum(t.get(i)[j]) == elected[j]) {
          sum += w[i] * t.get(i)[j];
          kept++;
        }
      }
      out[j] = sum / Math.max(1, kept);
    }
    return out;
  }

  static double[] weightedSum(List<double[]> t, double[] w) {
    double[] out = new double[t.get(0).length];
    for (int i = 0; i < t.size(); i++) {
      for (int j = 0; j < out.length; j++) {
        out[j] += w[i] * t.get(i)[j];
      }
    }
    return out;
  }
}
