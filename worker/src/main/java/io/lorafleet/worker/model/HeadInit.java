package io.lorafleet.worker.model;

import io.lorafleet.worker.safetensors.Tensor;
import java.util.Random;

/**
 * A classification head that a checkpoint lacks (a base model, or one trained for another task), as
 * transformers' _init_weights makes it: weights normal(0, initializer_range), biases zero. The draw
 * is seeded by the tensor's name, so the driver and every worker make the same head without
 * exchanging it.
 */
final class HeadInit {
  private HeadInit() {}

  static Tensor tensor(ModelConfig c, ParamSpec p) {
    float[] v = new float[Math.toIntExact(p.numel())];
    if (!p.name().endsWith(".bias")) {
      Random rng = new Random(p.name().hashCode()); // String.hashCode is specified: the same on every JVM
      for (int i = 0; i < v.length; i++) {
        v[i] = (float) (rng.nextGaussian() * c.initializerRange());
      }
    }
    return Tensor.ofFloats(v, p.hfShape());
  }
}
