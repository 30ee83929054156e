package io.lorafleet.driver;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** An adapter directory's values, for tests that hold two adapters to each other within a fraction of the norm. */
public final class AdapterValues {
  private AdapterValues() {}

  /** The adapter's values, tensor by tensor in name order, flattened. */
  public static double[] of(Path adapter) {
    var r = io.lorafleet.worker.safetensors.SafetensorsReader.open(adapter.resolve("adapter_model.safetensors"));
    List<Double> out = new ArrayList<>();
    for (String name : new java.util.TreeSet<>(r.tensors().keySet())) {
      for (float f : r.read(name).toFloatArray()) {
        out.add((double) f);
      }
    }
    return out.stream().mapToDouble(Double::doubleValue).toArray();
  }

  /** ‖got − want‖ ≤ {@code fraction}·‖want‖ over the two adapters' values (the tolerance family of N workers against 1). */
  public static void assertClose(Path want, Path got, double fraction, String what) {
    double[] a = of(want);
    double[] b = of(got);
    assertEquals(a.length, b.length, what + ": the adapters hold different numbers of values");
    double norm = 0;
    double diff = 0;
    for (int i = 0; i < a.length; i++) {
      norm += a[i] * a[i];
      diff += (a[i] - b[i]) * (a[i] - b[i]);
    }
    assertTrue(norm > 0 && Math.sqrt(diff) <= fraction * Math.sqrt(norm), what + ": the adapters differ by " + Math.sqrt(diff) + " of norm "
        + Math.sqrt(norm));
  }
}
