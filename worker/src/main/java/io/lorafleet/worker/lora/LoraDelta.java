package io.lorafleet.worker.lora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.lorafleet.worker.model.LinearDelta;
import io.lorafleet.worker.model.LinearSpec;
import java.util.Map;
import java.util.Optional;
import java.util.SplittableRandom;

/**
 * The LoRA term of a projection (Hu et al. 2021, eq. 3): delta(x) = s · dropout(x)·Aᵀ·Bᵀ, with A
 * (r, in), B (out, r), x (..., in). Dropout masks come from a seeded host RNG so that a step is
 * reproducible on any device and after resume.
 */
final class LoraDelta implements LinearDelta {
  record Factors(NDArray a, NDArray b, double scale, int index) {}

  private final NDManager manager;
  private final Map<String, Factors> factors;
  private final double dropout;
  private final long seed;

  LoraDelta(NDManager manager, Map<String, Factors> factors, double dropout, long seed) {
    this.manager = manager;
    this.factors = Map.copyOf(factors);
    this.dropout = dropout;
    this.seed = seed;
  }

  @Override
  public Optional<NDArray> delta(LinearSpec module, NDArray x) {
    Factors f = factors.get(module.name());
    if (f == null) {
      return Optional.empty();
    }
    NDArray in = x;
    if (dropout > 0 && seed >= 0) {
      in = x.mul(dropoutMask(x, f.index()));
    }
    // s·(x·Aᵀ)·Bᵀ = (x·Aᵀ)·(s·B)ᵀ: scaling the (out, r) factor, not the (..., out) output, saves a full-size pass
    return Optional.of(in.matMul(f.a().transpose()).matMul(f.b().mul(f.scale()).transpose()));
  }

  /** Inverted dropout: keep with probability 1−p and scale kept values by 1/(1−p). */
  private NDArray dropoutMask(NDArray x, int index) {
    SplittableRandom rng = new SplittableRandom(seed * 1_000_003L + index);
    float[] m = new float[Math.toIntExact(x.size())];
    float keep = (float) (1.0 / (1.0 - dropout));
    for (int i = 0; i < m.length; i++) {
      m[i] = rng.nextDouble() < dropout ? 0f : keep;
    }
    return manager.create(m, x.getShape()).toType(x.getDataType(), false);
  }
}
