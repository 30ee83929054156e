package io.lorafleet.driver.optim;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/**
 * Golden values from transformers' definitions (optimization.py: get_linear_schedule_with_warmup,
 * get_cosine_schedule_with_warmup, get_constant_schedule, get_constant_schedule_with_warmup,
 * get_cosine_with_min_lr_schedule_with_warmup, and TrainingArguments.get_warmup_steps), worked by
 * hand for peak 1, 2 warm-up steps and 10 steps in all; update s uses lr(s).
 */
class ScheduleTest {
  @Test
  void transformersDefinitions() {
    Schedule linear = new Schedule("linear", 1, 2, 10);
    // warm-up s/2 from 0; then (10 − s)/(10 − 2)
    assertEquals(0.0, linear.lr(0));
    assertEquals(0.5, linear.lr(1));
    assertEquals(1.0, linear.lr(2));
    assertEquals(0.5, linear.lr(6));
    assertEquals(0.125, linear.lr(9));
    assertEquals(0.0, linear.lr(10));
    Schedule cosine = new Schedule("cosine", 1, 2, 10);
    // ½(1 + cos(π·(s − 2)/8)): 1 at s = 2, ½ at s = 6, ½(1 + cos(7π/8)) at s = 9
    assertEquals(0.5, cosine.lr(1));
    assertEquals(1.0, cosine.lr(2));
    assertEquals(0.5, cosine.lr(6), 1e-15);
    assertEquals(0.5 * (1 + Math.cos(7 * Math.PI / 8)), cosine.lr(9), 1e-15);
    Schedule constant = new Schedule("constant", 1, 2, 10);
    assertEquals(1.0, constant.lr(0), "constant ignores warm-up, as get_constant_schedule does");
    Schedule withWarmup = new Schedule("constant_with_warmup", 1, 2, 10);
    assertEquals(0.0, withWarmup.lr(0));
    assertEquals(0.5, withWarmup.lr(1));
    assertEquals(1.0, withWarmup.lr(9));
    Schedule floor = new Schedule("cosine_with_min_lr", 1, 2, 10, 0.1);
    // the cosine factor scaled into [0.1, 1]: ½·0.9 + 0.1 at s = 6; warm-up as the others
    assertEquals(0.55, floor.lr(6), 1e-15);
    assertEquals(0.1, floor.lr(10), 1e-15);
    assertEquals(0.0, floor.lr(0));
    // warmup_ratio: ceil(95 · 0.1) = 10; given steps win
    assertEquals(10, Schedule.warmupSteps(0, 0.1, 95));
    assertEquals(3, Schedule.warmupSteps(3, 0.1, 95));
  }

  @Test
  void badSettingsAreRefusedByName() {
    var e = assertThrows(IllegalArgumentException.class, () -> new Schedule("wsd", 1, 0, 10));
    assertTrue(e.getMessage().contains("'wsd'") && e.getMessage().contains("cosine_with_min_lr"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> new Schedule("cosine_with_min_lr", 1, 0, 10));
    assertTrue(e.getMessage().contains("--min-lr-rate"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> new Schedule("cosine", 1, 0, 10, 0.1));
    assertTrue(e.getMessage().contains("--min-lr-rate"), e.getMessage());
  }
}
