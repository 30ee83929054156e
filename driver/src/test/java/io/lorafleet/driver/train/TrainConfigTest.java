package io.lorafleet.driver.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.quant.Quantization;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The builder copies every field, sets only what it is told, and builds through the record's validation. */
class TrainConfigTest {
  static TrainConfig job() {
    return TrainConfig.builder("/models/m", "/data/d", "/runs/r").tuner(LoraConfig.ofTargetModules(8, 16, "q_proj,v_proj").withDropout(0.05)).lr(2e-4)
        .warmup(10).weightDecay(0.01).seed(7).build();
  }

  @Test
  void theBuilderCopiesEveryFieldAndChangesOnlyWhatItIsTold() {
    TrainConfig c = job();
    assertEquals(c, c.toBuilder().build());
    TrainConfig other = c.toBuilder().model("/models/j").tuner(LoraConfig.ofTargetModules(8, 16, "fc_in")).build();
    assertEquals("/models/j", other.io().model());
    assertEquals(List.of("fc_in"), other.tuner().targetModules());
    assertEquals(c, other.toBuilder().model(c.io().model()).tuner(c.tuner()).build());
    assertEquals(Quantization.NF4, c.toBuilder().quantize(Quantization.NF4).build().compute().quantize());
    assertNotEquals(c, c.toBuilder().evalEvery(5).build());
    assertEquals(64, c.toBuilder().evalEvery(5).build().eval().examples());
  }

  @Test
  void aBuiltJobIsValidatedAsAnyOther() {
    var e = assertThrows(IllegalArgumentException.class, () -> job().toBuilder().tuner(LoraConfig.ofTargetModules(0, 16, "q_proj")).build());
    assertTrue(e.getMessage().contains("0"), e.getMessage());
    var ragged = assertThrows(IllegalArgumentException.class, () -> job().toBuilder().globalBatch(7).microBatch(2).build());
    assertTrue(ragged.getMessage().startsWith("--global-batch (7) must be a multiple of --micro-batch (2)"), ragged.getMessage());
    var many = assertThrows(IllegalArgumentException.class, () -> job().toBuilder().globalBatch(8).microBatch(4).workers(3).build());
    assertTrue(many.getMessage().startsWith("--workers 3 exceeds the 2 micro-batch slots of a step (--global-batch 8 / --micro-batch 4)"),
        many.getMessage());
    job().toBuilder().globalBatch(12).microBatch(2).workers(4).build(); // 6 slots: shares of 1, 2, 1, 2
  }
}
