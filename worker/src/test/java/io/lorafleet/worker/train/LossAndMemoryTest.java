package io.lorafleet.worker.train;

import io.lorafleet.worker.model.Dropout;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.worker.TinyModels;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.ForwardContext;
import io.lorafleet.worker.model.LinearDelta;
import java.util.List;
import org.junit.jupiter.api.Test;

class LossAndMemoryTest {
  @Test
  void lossFallsOnTargetTokensOnly() {
    try (LanguageModel m = TinyModels.model(TinyModels.LLAMA, 2, DataType.FLOAT64)) {
      int[] ids = {1, 7, 8, 9, 10, 11};
      int[] labels = {-100, -100, -100, 9, 10, 11}; // context 1 7 8, target 9 10 11
      Batch b = Batch.of(new int[][] {ids}, new int[][] {labels});
      double expected = 0;
      try (NDManager s = m.manager().newSubManager()) {
        double[] logits = m.forward(ForwardContext.inference(s, LinearDelta.NONE), b).toDoubleArray();
        int v = 37;
        for (int t = 2; t < 5; t++) { // position t predicts ids[t+1]
          double max = Double.NEGATIVE_INFINITY;
          for (int k = 0; k < v; k++) {
            max = Math.max(max, logits[t * v + k]);
          }
          double z = 0;
          for (int k = 0; k < v; k++) {
            z += Math.exp(logits[t * v + k] - max);
          }
          expected += -(logits[t * v + ids[t + 1]] - max - Math.log(z));
        }
      }
      LoraModel lora = LoraModel.create(m, LoraConfig.of(2, 4, List.of("q_proj")));
      float[] p = lora.initialParams(1);
      StepResult r = TrainStep.evaluate(lora, p, List.of(b));
      assertEquals(3, r.tokens());
      assertEquals(expected, r.lossSum(), 1e-9);
      // Changing a context token's label (masked) changes nothing; all-masked rows give zero loss and gradient.
      Batch masked = Batch.of(new int[][] {ids}, new int[][] {{-100, -100, -100, -100, -100, -100}});
      StepResult z = TrainStep.run(lora, p, List.of(masked), Dropout.Plan.NONE);
      assertEquals(0, z.tokens());
      assertEquals(0, z.lossSum());
      for (float g : z.gradSum()) {
        assertEquals(0f, g);
      }
    }
  }

  @Test
  void gradientsAccumulateOverMicroBatchesAsOneBatch() {
    try (LanguageModel m = TinyModels.model(TinyModels.GPT2, 2, DataType.FLOAT64)) {
      LoraModel lora = LoraModel.create(m, LoraConfig.of(2, 4, List.of("c_attn", "c_fc")));
      float[] p = lora.initialParams(1);
      for (int i = 0; i < p.length; i++) {
        p[i] += 0.01f * (i % 7);
      }
      Batch a = Batch.of(new int[][] {{1, 3, 4, 5}}, new int[][] {{-100, 3, 4, 5}});
      Batch c = Batch.of(new int[][] {{1, 6, 7, 8}}, new int[][] {{-100, -100, 7, 8}});
      Batch both = Batch.of(new int[][] {{1, 3, 4, 5}, {1, 6, 7, 8}}, new int[][] {{-100, 3, 4, 5}, {-100, -100, 7, 8}});
      StepResult two = TrainStep.run(lora, p, List.of(a, c), Dropout.Plan.NONE);
      StepResult one = TrainStep.run(lora, p, List.of(both), Dropout.Plan.NONE);
      assertEquals(one.tokens(), two.tokens());
      assertEquals(one.lossSum(), two.lossSum(), 1e-9);
      for (int i = 0; i < p.length; i++) {
        assertEquals(one.gradSum()[i], two.gradSum()[i], 1e-5);
      }
    }
  }

  @Test
  void noNativeMemoryLeaksAcrossManySteps() {
    try (LanguageModel m = TinyModels.model(TinyModels.LLAMA, 2, DataType.FLOAT32)) {
      LoraModel lora = LoraModel.create(m, LoraConfig.of(4, 8, List.of("all-linear")).withDropout(0.1));
      float[] p = lora.initialParams(1);
      Batch b = Batch.of(new int[][] {{1, 3, 4, 5, 6, 7, 8, 9}}, new int[][] {{-100, 3, 4, 5, 6, 7, 8, 9}});
      TrainStep.run(lora, p, List.of(b), Dropout.Plan.loraOnly(1)); // warm up: lazily cached arrays (tied-head transposes) settle
      int before = m.manager().getManagedArrays().size();
      for (int i = 0; i < 200; i++) {
        StepResult r = TrainStep.run(lora, p, List.of(b, b), Dropout.Plan.loraOnly(i));
        for (int k = 0; k < p.length; k++) {
          p[k] -= 1e-3f * r.gradSum()[k];
        }
        TrainStep.evaluate(lora, p, List.of(b));
      }
      assertEquals(before, m.manager().getManagedArrays().size(), "arrays left in the model's manager after 200 steps");
      try (NDManager s = m.manager().newSubManager()) {
        NDArray x = m.forward(ForwardContext.inference(s, LinearDelta.NONE), b);
        assertTrue(Float.isFinite(x.sum().getFloat()));
      }
      assertEquals(before, m.manager().getManagedArrays().size());
    }
  }
}
