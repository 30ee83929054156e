package io.lorafleet.worker.model;

import static org.junit.jupiter.api.Assertions.assertEquals;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.worker.TinyModels;
import java.util.Arrays;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** A packed row computes exactly what its examples compute alone: no attention across boundaries. */
class PackingTest {
  static float[] logits(LanguageModel m, Batch b) {
    try (NDManager s = m.manager().newSubManager()) {
      return m.forward(ForwardContext.inference(s, LinearDelta.NONE), b).toFloatArray();
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"llama", "gpt2"})
  void packedRowEqualsSeparateExamples(String arch) {
    try (LanguageModel m = TinyModels.model(arch.equals("llama") ? TinyModels.LLAMA : TinyModels.GPT2, 3, DataType.FLOAT32)) {
      int[] a = {1, 5, 6, 7};
      int[] b = {1, 9, 10, 11, 12};
      int[] row = {1, 5, 6, 7, 1, 9, 10, 11, 12};
      int[] pos = {0, 1, 2, 3, 0, 1, 2, 3, 4};
      float[] packed = logits(m, Batch.packed(new int[][] {row}, new int[][] {new int[9]}, new int[][] {pos}));
      float[] la = logits(m, Batch.of(new int[][] {a}, new int[][] {new int[4]}));
      float[] lb = logits(m, Batch.of(new int[][] {b}, new int[][] {new int[5]}));
      int v = m.config().vocabSize();
      for (int i = 0; i < la.length; i++) {
        assertEquals(la[i], packed[i], 1e-5, "first example, element " + i);
      }
      for (int i = 0; i < lb.length; i++) {
        assertEquals(lb[i], packed[4 * v + i], 1e-5, "second example, element " + i);
      }
      // without the restart (one long example) the second part differs: the test can fail
      int[] plain = new int[9];
      Arrays.setAll(plain, i -> i);
      float[] unpacked = logits(m, Batch.packed(new int[][] {row}, new int[][] {new int[9]}, new int[][] {plain}));
      double diff = 0;
      for (int i = 0; i < lb.length; i++) {
        diff = Math.max(diff, Math.abs(unpacked[4 * v + i] - lb[i]));
      }
      org.junit.jupiter.api.Assertions.assertTrue(diff > 1e-3, "attention across the boundary must change the output");
    }
  }
}
