package io.lorafleet.worker.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import org.junit.jupiter.api.Test;

/** A row's mask depends on the seed, its key, the module and the element's indices: not on its batch, place or padding. */
class DropoutTest {
  static final double P = 0.25;

  /** Row b's mask restricted to its first t of the padded middle axis (shape: rows, mid, last). */
  static float[] rowPrefix(float[] m, long[] shape, int b, int t) {
    int mid = (int) shape[1];
    int last = (int) shape[2];
    return Arrays.copyOfRange(m, b * mid * last, b * mid * last + t * last);
  }

  @Test
  void aRowsMaskIsItsOwnInAnyBatchAndUnderAnyPadding() {
    long[] small = {2, 5, 8}; // rows keyed 40, 41, padded to 5 tokens
    long[] big = {3, 9, 8}; // the row keyed 41 again, third in another batch, padded to 9
    float[] a = new Dropout(7, new long[] {40, 41}).mask(small, 3, P);
    float[] b = new Dropout(7, new long[] {12, 99, 41}).mask(big, 3, P);
    assertArrayEquals(rowPrefix(a, small, 1, 5), rowPrefix(b, big, 2, 5));
    assertFalse(Arrays.equals(rowPrefix(a, small, 0, 5), rowPrefix(a, small, 1, 5)), "rows differ");
    assertFalse(Arrays.equals(a, new Dropout(7, new long[] {40, 41}).mask(small, 4, P)), "modules differ");
    assertFalse(Arrays.equals(a, new Dropout(8, new long[] {40, 41}).mask(small, 3, P)), "seeds differ");
  }

  /** Attention probabilities (rows, heads, queries, keys): a query's line is keyed by (head, query), not by its padded offset. */
  @Test
  void attentionShapedMasksDoNotDependOnPaddingEither() {
    long[] padded = {1, 2, 6, 6};
    long[] exact = {1, 2, 4, 4};
    float[] p = new Dropout(1, new long[] {5}).mask(padded, 0, P);
    float[] e = new Dropout(1, new long[] {5}).mask(exact, 0, P);
    for (int h = 0; h < 2; h++) {
      for (int q = 0; q < 4; q++) {
        assertArrayEquals(Arrays.copyOfRange(e, (h * 4 + q) * 4, (h * 4 + q) * 4 + 4), Arrays.copyOfRange(p, (h * 6 + q) * 6, (h * 6 + q) * 6 + 4),
            "head " + h + ", query " + q);
      }
    }
  }

  @Test
  void dropsAboutPAndScalesTheRestBy1OverOneMinusP() {
    float[] m = new Dropout(3, new long[] {0, 1, 2, 3}).mask(new long[] {4, 64, 256}, 1, P);
    long zeros = 0;
    for (float v : m) {
      assertTrue(v == 0f || v == (float) (1 / (1 - P)), "value " + v);
      zeros += v == 0f ? 1 : 0;
    }
    double rate = (double) zeros / m.length; // 65,536 draws: 4 standard deviations is 0.0068
    assertEquals(P, rate, 0.007, "drop rate");
  }

  @Test
  void offAndWrongShapesAreNoMask() {
    assertFalse(Dropout.OFF.on());
    var e = assertThrows(IllegalStateException.class, () -> new Dropout(1, new long[] {0, 1}).mask(new long[] {3, 4}, 0, P));
    assertTrue(e.getMessage().contains("2 rows") && e.getMessage().contains("[3, 4]"), e.getMessage());
    try (var mg = Djl.newManager(ai.djl.Device.cpu(), "dropout-test")) {
      var x = mg.ones(new ai.djl.ndarray.types.Shape(2, 3));
      assertSame(x, Dropout.OFF.apply(mg, x, 0, P));
      assertSame(x, new Dropout(1, new long[] {0, 1}).apply(mg, x, 0, 0));
    }
  }
}
