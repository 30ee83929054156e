package io.lorafleet.driver.eval;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** GLUE's metrics against values worked out by hand from their definitions (scikit-learn's and scipy's). */
class ClassificationMetricsTest {
  @Test
  void binaryAccuracyF1AndMatthews() {
    // tp 3, fp 1, fn 2, tn 4
    float[] gold = {1, 1, 1, 1, 1, 0, 0, 0, 0, 0};
    float[] pred = {1, 1, 1, 0, 0, 1, 0, 0, 0, 0};
    ClassificationMetrics m = ClassificationMetrics.of(pred, gold, false);
    assertEquals(0.7, m.accuracy(), 1e-12);
    assertEquals(2 * 3.0 / (2 * 3 + 1 + 2), m.f1(), 1e-12);
    assertEquals((3 * 4 - 1 * 2) / Math.sqrt(4.0 * 5 * 5 * 6), m.matthews(), 1e-12);
    assertTrue(Double.isNaN(m.pearson()));
    // a constant prediction: Matthews is 0 (an empty marginal), F1 0 without true positives
    ClassificationMetrics constant = ClassificationMetrics.of(new float[10], gold, false);
    assertEquals(0.5, constant.accuracy(), 1e-12);
    assertEquals(0, constant.matthews());
    assertEquals(0, constant.f1());
  }

  @Test
  void threeClassesHaveAccuracyOnly() {
    ClassificationMetrics m = ClassificationMetrics.of(new float[] {0, 1, 2, 2}, new float[] {0, 2, 2, 2}, false);
    assertEquals(0.75, m.accuracy(), 1e-12);
    assertTrue(Double.isNaN(m.f1()) && Double.isNaN(m.matthews()));
  }

  @Test
  void regressionPearsonAndSpearmanWithTies() {
    float[] gold = {1, 2, 3, 4, 5};
    float[] pred = {2, 1, 4, 3, 5};
    ClassificationMetrics m = ClassificationMetrics.of(pred, gold, true);
    assertEquals(0.8, m.pearson(), 1e-9); // cov 8/5, var 2 each
    assertEquals(0.8, m.spearman(), 1e-9); // the values are their ranks
    assertArrayEquals(new double[] {1.5, 1.5, 3, 4.5, 4.5}, ClassificationMetrics.ranks(new float[] {7, 7, 8, 9, 9}), 0);
    // monotone but not linear: Spearman 1, Pearson below
    ClassificationMetrics mono = ClassificationMetrics.of(new float[] {1, 8, 27, 64, 125}, gold, true);
    assertEquals(1, mono.spearman(), 1e-12);
    assertTrue(mono.pearson() < 0.99);
    assertTrue(Double.isNaN(m.accuracy()));
  }
}
