package io.lorafleet.driver.executor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import org.junit.jupiter.api.Test;

class DeviceBindingTest {
  @Test
  void bindsTheAssignedGpuOrFallsBackToCpu() {
    assertEquals(Device.cpu(), WorkerTask.device(new String[0], 0), "no GPU assigned: CPU");
    assertEquals(Device.gpu(2), WorkerTask.device(new String[] {"2"}, 4));
    var e = assertThrows(IllegalStateException.class, () -> WorkerTask.device(new String[] {"0"}, 0));
    assertTrue(e.getMessage().contains("Spark assigned GPU 0") && e.getMessage().contains("CUDA native flavour"), e.getMessage());
    assertThrows(IllegalStateException.class, () -> WorkerTask.device(new String[] {"3"}, 2));
    assertThrows(IllegalArgumentException.class, () -> WorkerTask.device(new String[] {"gpu-a"}, 2));
  }
}
