package io.lorafleet.driver.average;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Map;
import org.junit.jupiter.api.Test;

/** The running averages' bookkeeping without a run: their settings, a burn-in, and what a checkpoint restores. */
class RunningAveragesTest {
  @Test
  void bemaDefaultsAreTrlsAndBadSettingsAreRefusedByFlag() {
    assertEquals(new Bema(false, 0.5, 0.2, 10, 0, 1.0, 0.0), Bema.OFF, "TRL's BEMACallback: ema_power 0.5, bias_power 0.2, lag 10, update_after 0, multiplier 1, min 0");
    assertEquals(Math.pow(12, -0.5), Bema.OFF.beta(2), 0);
    assertEquals(Math.pow(12, -0.2), Bema.OFF.alpha(2), 0);
    assertTrue(assertThrows(IllegalArgumentException.class, () -> new RunningAverages(1.0, Bema.OFF, 1)).getMessage().contains("--ema-decay"));
    assertTrue(assertThrows(IllegalArgumentException.class, () -> new RunningAverages(0.9, Bema.OFF, 0)).getMessage().contains("--average-every"));
    assertTrue(assertThrows(IllegalArgumentException.class, () -> new Bema(true, 0.5, 0.2, 0, 0, 1, 0)).getMessage().contains("--bema-lag"));
    assertFalse(new RunningAverages(0, Bema.OFF, 1).any());
  }

  /** Before its burn-in ends BEMA is the adapter itself; the EMA starts at the run's first step. */
  @Test
  void bemaWaitsForItsBurnInAndTheEmaStartsAtOnce() {
    RunningAverages a = new RunningAverages(0.5, new Bema(true, 0.5, 0.2, 10, 2, 1, 0), 1);
    a.startAt(0, new float[] {0});
    a.afterStep(1, new float[] {4});
    assertArrayEquals(new float[] {2}, a.ema().orElseThrow());
    assertArrayEquals(new float[] {4}, a.bema(new float[] {4}).orElseThrow(), "burn-in: the adapter");
    a.afterStep(2, new float[] {8}); // tau: theta0 = mu = 8
    a.afterStep(3, new float[] {10});
    double beta = Math.pow(11, -0.5);
    double mu = (1 - beta) * 8 + beta * 10;
    assertEquals((float) (mu + Math.pow(11, -0.2) * 2), a.bema(new float[] {10}).orElseThrow()[0], 1e-6);
  }

  /** A checkpoint that kept an average gives it back as it was; one that did not (the flag is new on --resume) starts it at the resumed adapter. */
  @Test
  void aCheckpointRestoresWhatItKeptAndTheRestStartsAtTheResume() {
    RunningAverages a = new RunningAverages(0.5, Bema.OFF, 1);
    a.startAt(0, new float[] {0});
    a.afterStep(1, new float[] {4});
    Map<String, float[]> saved = a.tensors();
    RunningAverages b = new RunningAverages(0.5, Bema.OFF, 1);
    b.restore(saved);
    b.startAt(1, new float[] {100});
    assertArrayEquals(new float[] {2}, b.ema().orElseThrow(), "restored, not restarted");
    RunningAverages c = new RunningAverages(0.5, new Bema(true, 0.5, 0.2, 10, 0, 1, 0), 1);
    c.restore(saved);
    c.startAt(1, new float[] {4});
    assertArrayEquals(new float[] {2}, c.ema().orElseThrow());
    assertArrayEquals(new float[] {4}, c.bema(new float[] {4}).orElseThrow(), "BEMA starts at the resumed adapter");
  }
}
