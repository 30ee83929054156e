package io.lorafleet.driver.optim;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;

class LossScalerTest {
  @Test
  void gradScalersDefaultsHalveOnOverflowAndDoubleAfterCleanSteps() {
    LossScaler s = new LossScaler();
    assertEquals(65536.0, s.scale());
    for (int i = 0; i < 1999; i++) {
      s.update(false);
    }
    assertEquals(65536.0, s.scale(), "not before 2000 clean steps");
    s.update(false);
    assertEquals(131072.0, s.scale());
    assertEquals(0, s.cleanSteps());
    s.update(false);
    s.update(true);
    assertEquals(65536.0, s.scale(), "an overflow halves it and restarts the count");
    assertEquals(0, s.cleanSteps());
    LossScaler resumed = new LossScaler(1024.0, 1999, LossScaler.GROWTH_INTERVAL);
    resumed.update(false);
    assertEquals(2048.0, resumed.scale(), "a resumed scaler continues its count");
    assertThrows(IllegalArgumentException.class, () -> new LossScaler(0, 0, 1));
  }
}
