package io.lorafleet.worker.train;

import io.lorafleet.worker.model.Dropout;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.types.DataType;
import io.lorafleet.worker.TinyModels;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.model.LanguageModel;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

/** A step whose gradient holds NaN or infinity fails, naming the tensor, instead of passing it on to the optimizer. */
class NonFiniteGradientTest {
  @Test
  void aDivergedStepFailsWithTheTensorNamed() {
    try (LanguageModel m = TinyModels.model(TinyModels.LLAMA, 4, DataType.FLOAT32)) {
      LoraModel lora = LoraModel.create(m, LoraConfig.of(2, 4, List.of("q_proj")));
      float[] p = new float[lora.layout().size()];
      Arrays.fill(p, 1e30f); // q overflows to infinity, attention turns NaN
      Batch b = Batch.of(new int[][] {{1, 5, 9, 3, 7}}, new int[][] {{1, 5, 9, 3, 7}});
      IllegalStateException e = assertThrows(IllegalStateException.class, () -> TrainStep.run(lora, p, List.of(b), Dropout.Plan.NONE));
      assertTrue(e.getMessage().contains("non-finite gradient for 'base_model.model.model.layers."), e.getMessage());
    }
  }
}
