package io.lorafleet.driver.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lorafleet.worker.quant.Quantization;
import org.junit.jupiter.api.Test;

/** The builder copies every field, sets only what it is told, and builds through the record's validation. */
class TrainConfigTest {
  static TrainConfig job() {
    return new TrainConfig("/models/m", "/data/d", "/runs/r", "q_proj,v_proj", 8, 16, 0.05, 2, 100, 8, 4, 2e-4, 10, "cosine", "adamw", 0.01,
        1.0, 10, 5, 7, 120_000, 3, false, "", 0, 64, 0, "svd");
  }

  @Test
  void theBuilderCopiesEveryFieldAndChangesOnlyWhatItIsTold() {
    TrainConfig c = job();
    assertEquals(c, c.toBuilder().build());
    TrainConfig other = c.toBuilder().model("/models/j").targetModules("fc_in").build();
    assertEquals("/models/j", other.model());
    assertEquals("fc_in", other.targetModules());
    assertEquals(c, other.toBuilder().model(c.model()).targetModules(c.targetModules()).build());
    assertEquals(c.withQuantize(Quantization.NF4), c.toBuilder().quantize(Quantization.NF4).build());
    assertEquals(0, c.toBuilder().epochs(3).build().withSteps(40).epochs(), "withSteps drops --epochs");
    assertNotEquals(c, c.withEval(5));
    assertEquals(64, c.withEval(5).evalExamples());
  }

  @Test
  void aBuiltJobIsValidatedAsAnyOther() {
    var e = assertThrows(IllegalArgumentException.class, () -> job().toBuilder().rank(0).build());
    assertTrue(e.getMessage().contains("0"), e.getMessage());
    assertThrows(IllegalArgumentException.class, () -> job().toBuilder().globalBatch(7).build(), "7 rows do not split over 2 workers");
  }
}
