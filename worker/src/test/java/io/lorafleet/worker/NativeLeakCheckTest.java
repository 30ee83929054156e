package io.lorafleet.worker;

import static org.junit.jupiter.api.Assertions.assertEquals;

import ai.djl.ndarray.NDManager;
import org.junit.jupiter.api.Test;

/** The harness's leak count sees what a test leaves open, managers and arrays alike, and nothing once it is closed. */
class NativeLeakCheckTest {
  @Test
  void anOpenManagerAndItsArraysAreCountedUntilClosed() throws Exception {
    int before = NativeLeakCheck.held();
    try (NDManager m = NDManager.newBaseManager()) {
      m.create(new float[] {1, 2, 3});
      try (NDManager sub = m.newSubManager()) {
        sub.create(new float[] {4});
        assertEquals(before + 4, NativeLeakCheck.held(), "a manager, its array, a sub-manager and its array");
      }
      assertEquals(before + 2, NativeLeakCheck.held());
    }
    assertEquals(before, NativeLeakCheck.held());
  }
}
