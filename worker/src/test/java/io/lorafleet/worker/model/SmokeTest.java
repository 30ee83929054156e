package io.lorafleet.worker.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.worker.TinyModels;
import org.junit.jupiter.api.Test;

class SmokeTest {
  @Test
  void forwardShapes() {
    for (TinyModelSpec spec : new TinyModelSpec[] {TinyModels.LLAMA, TinyModels.QWEN2, TinyModels.GPT2}) {
      try (LanguageModel m = TinyModels.model(spec, 1, DataType.FLOAT32); NDManager s = m.manager().newSubManager()) {
        Batch b = Batch.of(new int[][] {{1, 5, 6, 7}, {1, 8, 9, 10}}, new int[][] {{-100, -100, 6, 7}, {-100, 8, 9, 10}});
        NDArray logits = m.forward(ForwardContext.inference(s, LinearDelta.NONE), b);
        assertArrayEquals(new long[] {2, 4, 37}, logits.getShape().getShape());
        assertTrue(Float.isFinite(logits.sum().getFloat()));
      }
    }
  }
}
