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
    float[] a = new Dropout(7, new long[] {40, 41}, false).mask(small, 3, P);
    float[] b = new Dropout(7, new long[] {12, 99, 41}, false).mask(big, 3, P);
    assertArrayEquals(rowPrefix(a, small, 1, 5), rowPrefix(b, big, 2, 5));
    assertFalse(Arrays.equals(rowPrefix(a, small, 0, 5), rowPrefix(a, small, 1, 5)), "rows differ");
    assertFalse(Arrays.equals(a, new Dropout(7, new long[] {40, 41}, false).mask(small, 4, P)), "modules differ");
    assertFalse(Arrays.equals(a, new Dropout(8, new long[] {40, 41}, false).mask(small, 3, P)), "seeds differ");
  }

  /** Attention probabilities (rows, heads, queries, keys): a query's line is keyed by (head, query), not by its padded offset. */
  @Test
  void attentionShapedMasksDoNotDependOnPaddingEither() {
    long[] padded = {1, 2, 6, 6};
    long[] exact = {1, 2, 4, 4};
    float[] p = new Dropout(1, new long[] {5}, false).mask(padded, 0, P);
    float[] e = new Dropout(1, new long[] {5}, false).mask(exact, 0, P);
    for (int h = 0; h < 2; h++) {
      for (int q = 0; q < 4; q++) {
        assertArrayEquals(Arrays.copyOfRange(e, (h * 4 + q) * 4, (h * 4 + q) * 4 + 4), Arrays.copyOfRange(p, (h * 6 + q) * 6, (h * 6 + q) * 6 + 4),
            "head " + h + ", query " + q);
      }
    }
  }

  /** A block of attention rows (the checkpointed step's) draws exactly its rows of the whole matrix's mask. */
  @Test
  void aBlockOfQueryRowsIsTheSliceOfTheWholeMask() {
    Dropout d = new Dropout(2, new long[] {9, 3}, true);
    long site = Dropout.site("transformer.h.0.attn.attn_dropout");
    float[] whole = d.mask(new long[] {2, 3, 7, 7}, site, P);
    float[] block = d.mask(new long[] {2, 3, 2, 7}, new long[] {0, 0, 4, 0}, site, P); // query rows 4 and 5
    for (int b = 0; b < 2; b++) {
      for (int h = 0; h < 3; h++) {
        for (int q = 0; q < 2; q++) {
          int from = ((b * 3 + h) * 7 + 4 + q) * 7;
          int to = ((b * 3 + h) * 2 + q) * 7;
          assertArrayEquals(Arrays.copyOfRange(whole, from, from + 7), Arrays.copyOfRange(block, to, to + 7), "row " + b + ", head " + h + ", query " + (4 + q));
        }
      }
    }
  }

  /** The model's sites are keyed by their HF module names, apart from one another and from the adapter modules' indexes 0, 1, …; off, they drop nothing. */
  @Test
  void modelSitesAreKeyedByNameAndOnlyInTrainModeWithTheModelOn() {
    long a = Dropout.site("bert.encoder.layer.0.output.dropout");
    assertTrue(a < 0, "top bit set: no adapter module index is negative");
    assertFalse(a == Dropout.site("bert.encoder.layer.1.output.dropout"));
    try (var mg = Djl.newManager(ai.djl.Device.cpu(), "dropout-test")) {
      var x = mg.ones(new ai.djl.ndarray.types.Shape(2, 16));
      assertSame(x, new Dropout(1, new long[] {0, 1}, false).model(x, "dropout", P, 0), "--model-dropout off");
      assertSame(x, Dropout.OFF.model(x, "dropout", P, 0), "eval mode");
      assertSame(x, new Dropout(1, new long[] {0, 1}, true).model(x, "dropout", 0, 0), "rate 0");
      float[] dropped = new Dropout(1, new long[] {0, 1}, true).model(x, "dropout", P, 0).toFloatArray();
      assertArrayEquals(new Dropout(1, new long[] {0, 1}, true).mask(new long[] {2, 16}, Dropout.site("dropout"), P), dropped);
    }
  }

  @Test
  void dropsAboutPAndScalesTheRestBy1OverOneMinusP() {
    float[] m = new Dropout(3, new long[] {0, 1, 2, 3}, false).mask(new long[] {4, 64, 256}, 1, P);
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
    var e = assertThrows(IllegalStateException.class, () -> new Dropout(1, new long[] {0, 1}, false).mask(new long[] {3, 4}, 0, P));
    assertTrue(e.getMessage().contains("2 rows") && e.getMessage().contains("[3, 4]"), e.getMessage());
    try (var mg = Djl.newManager(ai.djl.Device.cpu(), "dropout-test")) {
      var x = mg.ones(new ai.djl.ndarray.types.Shape(2, 3));
      assertSame(x, Dropout.OFF.apply(mg, x, 0, P));
      assertSame(x, new Dropout(1, new long[] {0, 1}, false).apply(mg, x, 0, 0));
    }
  }
}
