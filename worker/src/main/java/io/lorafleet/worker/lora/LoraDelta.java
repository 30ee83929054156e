package io.lorafleet.worker.lora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import io.lorafleet.worker.model.Dropout;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.LinearDelta;
import io.lorafleet.worker.model.LinearSpec;
import io.lorafleet.worker.model.Ops;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * The LoRA term of a projection (Hu et al. 2021, eq. 3): delta(x) = s · dropout(x)·Aᵀ·Bᵀ, with A
 * (r, in), B (out, r), x (..., in). Dropout masks come from a seeded host RNG so that a step is
 * reproducible on any device and after resume.
 *
 * <p>VeRA (Kopiczko et al. 2024), as PEFT's vera Linear.forward: y + λ_b ⊙ ((λ_d ⊙ dropout(x)·Aᵀ)·Bᵀ),
 * where A and B are slices of the shared frozen projections.
 *
 * <p>DoRA (Liu et al. 2024), as PEFT's DoraLinearLayer.forward: with g = m/‖W0 + s·B·A‖ per output
 * (the norm detached), y' = y + (g − 1)·(y − b) + g·s·(x·Aᵀ)·Bᵀ, where y = x·W0 + b is the frozen
 * projection. Under dropout the middle term is recomputed on dropout(x) without the bias,
 * (g − 1)·dropout(x)·W0, as PEFT does, and the LoRA term reads dropout(x) too.
 *
 * <p>Each method's term is a {@link Term} of its own ({@link PeftMethod#factors} picks it); this
 * class owns what they share: the x·Aᵀ product (fused across modules that read one input), and
 * dropout.
 */
public final class LoraDelta implements LinearDelta {
  /** A method's forward term for one module: y plus its update, from x·Aᵀ (and the input it was computed on). */
  public interface Term {
    /**
     * @param y the frozen projection x·W0 + b (..., out)
     * @param xa in·Aᵀ (..., r)
     * @param in the input the update reads: dropout(x), or x
     * @param x the projection's input
     */
    NDArray add(Factors f, NDArray y, NDArray xa, NDArray in, NDArray x);
  }

  /** LoRA's term, y + s·(x·Aᵀ)·Bᵀ: also AdaLoRA's, with A⊙E as its A. */
  public static final Term PLAIN = (f, y, xa, in, x) -> {
    // y + s·(x·Aᵀ)·Bᵀ = y + (x·Aᵀ)·(s·B)ᵀ: scaling the (out, r) factor, not the (..., out) output, and
    // adding in the product itself (addmm) save two full-size passes
    return LanguageModel.addmm(y, xa, f.b().mul(Ops.constant(f.b(), f.scale())));
  };

  /** DoRA's magnitude m (out), the detached norm (out), the frozen weight W0 (in, out) and bias. */
  public record Dora(NDArray magnitude, NDArray norm, NDArray weight, Optional<NDArray> bias) implements Term {
    @Override
    public NDArray add(Factors f, NDArray y, NDArray xa, NDArray in, NDArray x) {
      NDArray g = magnitude.div(norm); // (out)
      // the frozen term without its bias: y − b, or, under dropout, dropout(x)·W0
      NDArray base = in != x ? in.matMul(weight) : bias.map(y::sub).orElse(y);
      NDArray lora = xa.matMul(f.b().mul(Ops.constant(f.b(), f.scale())).transpose()); // (..., out)
      return y.add(base.mul(g.sub(Ops.constant(g, 1.0))).add(lora.mul(g)));
    }
  }

  /** VeRA's per-module scales: λ_b (out) and λ_d (r); a and b are then the slices of the shared projections. */
  public record Vera(NDArray lambdaB, NDArray lambdaD) implements Term {
    @Override
    public NDArray add(Factors f, NDArray y, NDArray xa, NDArray in, NDArray x) { // PEFT's VeRA: y + λ_b ⊙ ((λ_d ⊙ dropout(x)·Aᵀ)·Bᵀ)
      return y.add(xa.mul(lambdaD).matMul(f.b().transpose()).mul(lambdaB));
    }
  }

  /** One module's factors A (r, in) and B (out, r), its scaling, its index (dropout's stream) and its method's term. */
  public record Factors(NDArray a, NDArray b, double scale, int index, Term term) {}

  private final NDManager manager;
  private final Map<String, Factors> factors;
  private final double dropout;
  private final Dropout masks;
  /** Adapted modules per input group, in target order (only groups of two or more are fused). */
  private final Map<String, List<String>> groups;
  /** Per group: the input it was computed for and each member's x·Aᵀ. */
  private final Map<String, Map.Entry<NDArray, Map<String, NDArray>>> fused = new HashMap<>();

  LoraDelta(NDManager manager, Map<String, Factors> factors, Map<String, List<String>> groups, double dropout, Dropout masks) {
    this.manager = manager;
    this.factors = Map.copyOf(factors);
    this.groups = dropout > 0 ? Map.of() : Map.copyOf(groups); // dropout draws a mask per module: no shared product
    this.dropout = dropout;
    this.masks = masks;
  }

  /** The factors per adapted module, by module name. */
  Map<String, Factors> factors() {
    return factors;
  }

  @Override
  public NDArray addTo(LinearSpec module, NDArray x, NDArray y) {
    Factors f = factors.get(module.name());
    if (f == null) {
      return y;
    }
    NDArray xa;
    NDArray in = x;
    List<String> group = groups.get(module.inputGroup());
    if (group != null && group.size() > 1) {
      xa = fusedProduct(module.inputGroup(), group, x).get(module.name());
    } else {
      in = masks.apply(manager, x, f.index(), dropout); // the module's index keys its masks
      xa = in.matMul(f.a().transpose()); // (..., r)
    }
    return f.term().add(f, y, xa, in, x);
  }

  /**
   * x·[A_1; …; A_n]ᵀ for the members of an input group in one matmul (one read of x forward, one
   * input-gradient product backward), split back per member. Computed once per input tensor.
   */
  private Map<String, NDArray> fusedProduct(String group, List<String> members, NDArray x) {
    Map.Entry<NDArray, Map<String, NDArray>> hit = fused.get(group);
    if (hit != null && hit.getKey() == x) {
      return hit.getValue();
    }
    NDList as = new NDList();
    long[] cuts = new long[members.size() - 1];
    long offset = 0;
    for (int i = 0; i < members.size(); i++) {
      NDArray a = factors.get(members.get(i)).a();
      as.add(a);
      offset += a.getShape().get(0);
      if (i < cuts.length) {
        cuts[i] = offset;
      }
    }
    NDArray all = x.matMul(NDArrays.concat(as, 0).transpose()); // (..., Σr)
    NDList parts = all.split(cuts, all.getShape().dimension() - 1);
    Map<String, NDArray> byModule = new HashMap<>();
    for (int i = 0; i < members.size(); i++) {
      byModule.put(members.get(i), parts.get(i));
    }
    fused.put(group, Map.entry(x, byModule));
    return byModule;
  }
}
