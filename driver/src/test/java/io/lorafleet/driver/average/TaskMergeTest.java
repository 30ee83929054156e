package io.lorafleet.driver.average;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** PEFT's combination types on small tensors, against values worked by hand from merge_utils' definitions. */
class TaskMergeTest {
  static final double[] T1 = {3, -1, 0.5, -4};
  static final double[] T2 = {-2, 2, 1, 0.1};
  static final double[] W = {1, 0.5};

  @Test
  void magnitudePruneKeepsTheLargestAndSums() {
    // density 0.5 keeps 2 of 4: T1 → [3, 0, 0, −4]; T2 → [−2, 2, 0, 0] (|−2| = |2|: index order); 1·T1 + 0.5·T2 = [2, 1, 0, −4]
    assertArrayEquals(new double[] {2, 1, 0, -4}, TaskMerge.combine("magnitude_prune", List.of(T1, T2), W, 0.5, "total", null));
  }

  /** The threshold selection keeps exactly what a stable sort of the indices by descending |x| keeps, ties included. */
  @Test
  void magnitudePruneEqualsAStableSortByMagnitude() {
    SplittableRandom rng = new SplittableRandom(3);
    for (int trial = 0; trial < 200; trial++) {
      int n = 1 + rng.nextInt(40);
      double[] x = new double[n];
      for (int i = 0; i < n; i++) {
        x[i] = (rng.nextInt(7) - 3) * (trial % 2 == 0 ? 1 : rng.nextDouble()); // many ties, zeros and both signs
      }
      double density = rng.nextDouble();
      Integer[] order = new Integer[n];
      for (int i = 0; i < n; i++) {
        order[i] = i;
      }
      java.util.Arrays.sort(order, (a, b) -> Double.compare(Math.abs(x[b]), Math.abs(x[a])));
      double[] want = new double[n];
      for (int i = 0; i < (int) (density * n); i++) {
        want[order[i]] = x[order[i]];
      }
      assertArrayEquals(want, TaskMerge.magnitudePrune(x, density), "trial " + trial);
    }
  }

  @Test
  void tiesElectsSignsOnThePrunedTensorsAndAveragesTheAgreeingWeightedOnes() {
    // pruned as above; Σ = [1, 2, 0, −4] elects [+, +, + (0 counts as +), −];
    // entry 0: only T1 agrees → 1·3 / 1; entry 1: only T2 → 0.5·2 / 1; entry 2: none → 0; entry 3: only T1 → −4
    assertArrayEquals(new double[] {3, 1, 0, -4}, TaskMerge.combine("ties", List.of(T1, T2), W, 0.5, "total", null));
    // total and frequency disagree on [5], [−1], [−1]: Σ = 3 elects +, giving 5; the count 1 − 2 elects −, giving (−1 − 1) / 2
    List<double[]> t = List.of(new double[] {5}, new double[] {-1}, new double[] {-1});
    double[] ones = {1, 1, 1};
    assertArrayEquals(new double[] {5}, TaskMerge.combine("ties", t, ones, 1, "total", null));
    assertArrayEquals(new double[] {-1}, TaskMerge.combine("ties", t, ones, 1, "frequency", null));
    // negative weights (task arithmetic): the election is on the unweighted tensors, the mean on the weighted ones
    assertArrayEquals(new double[] {-5}, TaskMerge.combine("ties", t, new double[] {-1, 1, 1}, 1, "total", null));
  }

  @Test
  void dareDropsWithProbabilityOneMinusDensityAndRescales() {
    // SplittableRandom(7)'s first four draws decide T1's entries, the next four T2's: an entry stays where the draw is < 0.5
    SplittableRandom probe = new SplittableRandom(7);
    boolean[] keep = new boolean[8];
    for (int i = 0; i < 8; i++) {
      keep[i] = probe.nextDouble() < 0.5;
    }
    double[] want = new double[4];
    for (int j = 0; j < 4; j++) {
      want[j] = (keep[j] ? T1[j] / 0.5 : 0) * W[0] + (keep[4 + j] ? T2[j] / 0.5 : 0) * W[1];
    }
    assertArrayEquals(want, TaskMerge.combine("dare_linear", List.of(T1, T2), W, 0.5, "total", new SplittableRandom(7)));
    // the rescale keeps the expectation: over many entries the mean of the dropped-and-rescaled tensor is the mean of the tensor
    double[] ones = new double[200_000];
    java.util.Arrays.fill(ones, 1);
    double[] d = TaskMerge.randomPrune(ones, 0.3, new SplittableRandom(1));
    double mean = java.util.Arrays.stream(d).average().orElseThrow();
    assertEquals(1.0, mean, 0.01);
    long kept = java.util.Arrays.stream(d).filter(x -> x != 0).count();
    assertEquals(0.3, kept / 200_000.0, 0.005);
    // dare_ties: the same drop, then TIES' election and disjoint mean
    double[] a = TaskMerge.randomPrune(T1, 0.5, new SplittableRandom(7));
    SplittableRandom r = new SplittableRandom(7);
    TaskMerge.randomPrune(T1, 0.5, r);
    double[] b = TaskMerge.randomPrune(T2, 0.5, r);
    assertArrayEquals(TaskMerge.disjointMerge(List.of(a, b), W, TaskMerge.electSign(List.of(a, b), "total")),
        TaskMerge.combine("dare_ties", List.of(T1, T2), W, 0.5, "total", new SplittableRandom(7)));
    assertTrue(keep.length == 8);
  }

  @Test
  void densityOneKeepsEverything() {
    assertArrayEquals(new double[] {2, 0, 1, -3.95}, TaskMerge.combine("magnitude_prune", List.of(T1, T2), W, 1, "total", null), 1e-15);
  }
}
