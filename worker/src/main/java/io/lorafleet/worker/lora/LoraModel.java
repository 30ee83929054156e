package io.lorafleet.worker.lora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.lorafleet.worker.flat.FlatLayout;
import io.lorafleet.worker.flat.Trainable;
import io.lorafleet.worker.model.BaseModel;
import io.lorafleet.worker.model.CausalLM;
import io.lorafleet.worker.model.ForwardContext;
import io.lorafleet.worker.model.LinearSpec;
import io.lorafleet.worker.model.Ops;
import io.lorafleet.worker.model.ParamSpec;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Random;
import java.util.Set;
import java.util.stream.Collectors;

/**
 * LoRA injected into a frozen {@link CausalLM}, with PEFT's target matching
 * (peft/tuners/tuners_utils.py check_target_module_exists): a listed name matches a module whose
 * path equals it or ends with "." + name; "all-linear" takes every projection but the output
 * layer; a regex must match the whole path. Only the factors (and biases, if asked) are trainable.
 */
public final class LoraModel implements Trainable {
  /** VeRA's shared projections, as PEFT saves them (save_projection). */
  public static final String VERA_A = "base_model.vera_A";
  public static final String VERA_B = "base_model.vera_B";
  private final BaseModel structure;
  private final LoraConfig config;
  private final List<LoraTarget> targets;
  private final List<String> biases;
  private final FlatLayout layout;
  private final Map<String, float[]> mergedOriginalBias = new HashMap<>();
  /** DoRA: each merged module's ‖W0 + ΔW‖ per row, which unmerge divides back out (PEFT caches it the same way). */
  private final Map<String, NDArray> mergedNorms = new HashMap<>();
  /** DoRA, for gradient checks only: the values whose ‖W0 + s·B·A‖ every forward pass uses, or null for the current ones. */
  private final float[] normsAt;

  private LoraModel(BaseModel structure, LoraConfig config, List<LoraTarget> targets, List<String> biases, float[] normsAt) {
    this.structure = structure;
    this.config = config;
    this.targets = List.copyOf(targets);
    this.biases = List.copyOf(biases);
    this.normsAt = normsAt;
    FlatLayout.Builder b = FlatLayout.builder();
    if (config.vera().on()) {
      // VeRA: the shared projections, sized for the widest adapted module, then λ_b and λ_d per module
      b.addFrozen(VERA_A, config.r(), targets.stream().mapToInt(t -> t.module().in()).max().orElse(0));
      b.addFrozen(VERA_B, targets.stream().mapToInt(t -> t.module().out()).max().orElse(0), config.r());
      for (LoraTarget t : targets) {
        b.add(t.keyLambdaB(), t.module().out());
        b.add(t.keyLambdaD(), t.rank());
      }
    } else if (config.adalora().on()) {
      for (LoraTarget t : targets) {
        b.add(t.keyAdaA(), t.rank(), t.module().in());
        b.add(t.keyAdaE(), t.rank(), 1);
        b.add(t.keyAdaB(), t.module().out(), t.rank());
      }
    } else {
      for (LoraTarget t : targets) {
        b.add(t.keyA(), t.rank(), t.module().in());
        b.add(t.keyB(), t.module().out(), t.rank());
        if (config.useDora()) {
          b.add(t.keyM(), t.module().out());
        }
      }
    }
    for (String bias : biases) {
      b.add(biasKey(bias), structure.paramSpec(bias).orElseThrow().hfShape());
    }
    this.layout = b.build();
  }

  /**
   * The adapter key of a trained bias, as PEFT writes it: a bias of an adapted projection lives in
   * the wrapped layer ({@code …q_proj.base_layer.bias}); any other keeps its own name
   * ({@code …ln_1.bias}).
   */
  public String biasKey(String bias) {
    for (LoraTarget t : targets) {
      if (bias.equals(t.module().name() + ".bias")) {
        return AdapterFormat.PREFIX + t.module().name() + ".base_layer.bias";
      }
    }
    return AdapterFormat.PREFIX + bias;
  }

  /**
   * Resolves the config against the model; a target that matches nothing names the modules that
   * exist. On a {@link io.lorafleet.worker.model.ModelSkeleton} the result has a layout and PEFT
   * I/O but cannot train or merge (that needs the loaded {@link CausalLM}).
   */
  public static LoraModel create(BaseModel base, LoraConfig config) {
    List<LinearSpec> all = base.linears();
    Set<Integer> layers = new LinkedHashSet<>(config.layersToTransform());
    int maxLayer = base.config().layers() - 1;
    for (int l : layers) {
      if (l < 0 || l > maxLayer) {
        throw new IllegalArgumentException("layers_to_transform holds " + l + " but the model has layers 0.." + maxLayer);
      }
    }
    List<LoraTarget> targets = new ArrayList<>();
    Set<String> unmatched = new LinkedHashSet<>(config.targetModules());
    for (LinearSpec s : all) {
      boolean match = false;
      for (String t : config.targetModules()) {
        boolean m;
        if (t.equals("all-linear")) {
          m = s.layer() >= 0;
        } else if (config.targetRegex()) {
          m = s.name().matches(t);
        } else {
          m = s.name().equals(t) || s.name().endsWith("." + t);
        }
        if (m) {
          unmatched.remove(t);
          match = true;
        }
      }
      if (match && (layers.isEmpty() || layers.contains(s.layer()))) {
        targets.add(new LoraTarget(s, config.rankFor(s.name()), config.scaleFor(s.name())));
      }
    }
    if (!unmatched.isEmpty() || targets.isEmpty()) {
      Set<String> names = all.stream().map(LinearSpec::shortName).collect(Collectors.toCollection(LinkedHashSet::new));
      throw new IllegalArgumentException("target_modules " + (unmatched.isEmpty() ? config.targetModules() : unmatched)
          + " match no module" + (layers.isEmpty() ? "" : " in layers_to_transform " + layers) + " of this "
          + base.config().modelType() + " model; its projections are: " + String.join(", ", names) + " (or all-linear)");
    }
    Set<String> whole = new LinkedHashSet<>();
    Set<String> targeted = targets.stream().map(t -> t.module().name() + ".bias").collect(Collectors.toSet());
    Set<String> head = new java.util.HashSet<>(base.headTensors());
    for (ParamSpec p : base.params()) {
      if (p.name().endsWith(".bias") && !head.contains(p.name()) && (config.bias().equals("all") || (config.bias().equals("lora_only") && targeted.contains(p.name())))) {
        whole.add(p.name());
      }
    }
    whole.addAll(base.headTensors()); // an encoder's classification head: PEFT's modules_to_save for SEQ_CLS
    return new LoraModel(base, config, targets, new ArrayList<>(whole), null);
  }

  /**
   * This DoRA model with ‖W0 + s·B·A‖ fixed at {@code at}'s values in every forward pass: the
   * function whose finite differences the (detached-norm) analytic gradient equals. For gradient checks.
   */
  public LoraModel withNormsFixedAt(float[] at) {
    return new LoraModel(structure, config, targets, biases, at.clone());
  }

  /** The loaded base; only a LoraModel created on a {@link CausalLM} has one. */
  @Override
  public CausalLM base() {
    if (structure instanceof CausalLM m) {
      return m;
    }
    throw new IllegalStateException("this adapter was built on the structure of the base only (no weights loaded): it can be read, written "
        + "and averaged, not trained or merged");
  }

  /** The base model's structure: config, tensors and projections. */
  public BaseModel structure() {
    return structure;
  }

  public LoraConfig config() {
    return config;
  }

  public List<LoraTarget> targets() {
    return targets;
  }

  /**
   * HF names of tensors trained whole: biases (as the config's bias option asks) and an encoder's
   * classification head. Each is saved under base_model.model.&lt;name&gt;, which is also where PEFT
   * saves a modules_to_save copy, and replaces the base's tensor in the forward pass and in a merge.
   */
  public List<String> biases() {
    return biases;
  }

  @Override
  public FlatLayout layout() {
    return layout;
  }

  /**
   * PEFT's init: A Kaiming-uniform(a=√5), i.e. U(±1/√in), or N(0, 1/r) for "gaussian", and B = 0;
   * for "false", A and B as nn.Linear leaves them, U(±1/√in) and U(±1/√r). Biases from the base.
   */
  public float[] initialParams(long seed) {
    float[] flat = new float[layout.size()];
    Random rng = new Random(seed);
    if (config.vera().on()) {
      initVera(flat);
    }
    if (config.adalora().on()) { // PEFT's AdaLoraLayer.reset_lora_parameters: E = 0, A and B ~ N(0, 0.02²)
      for (LoraTarget t : targets) {
        for (String key : List.of(t.keyAdaA(), t.keyAdaB())) {
          FlatLayout.Slot s = layout.slot(key).orElseThrow();
          for (int i = 0; i < s.size(); i++) {
            flat[s.offset() + i] = (float) (rng.nextGaussian() * 0.02);
          }
        }
      }
    }
    for (LoraTarget t : config.vera().on() || config.adalora().on() ? List.<LoraTarget>of() : targets) {
      FlatLayout.Slot a = layout.slot(t.keyA()).orElseThrow();
      double bound = 1.0 / Math.sqrt(t.module().in());
      for (int i = 0; i < a.size(); i++) {
        flat[a.offset() + i] = config.initLoraWeights().equals("gaussian")
            ? (float) (rng.nextGaussian() / t.rank())
            : (float) ((rng.nextDouble() * 2 - 1) * bound);
      }
      if (config.initLoraWeights().equals("false")) {
        FlatLayout.Slot b = layout.slot(t.keyB()).orElseThrow();
        double boundB = 1.0 / Math.sqrt(t.rank());
        for (int i = 0; i < b.size(); i++) {
          flat[b.offset() + i] = (float) ((rng.nextDouble() * 2 - 1) * boundB);
        }
      }
    }
    for (String bias : biases) {
      FlatLayout.Slot s = layout.slot(biasKey(bias)).orElseThrow();
      System.arraycopy(structure.hfTensor(bias).toFloatArray(), 0, flat, s.offset(), s.size());
    }
    if (config.useDora()) {
      if (structure instanceof CausalLM) {
        return withMagnitudes(flat);
      }
      for (LoraTarget t : targets) { // the weights live on the workers: Trainer has them fill these in (withMagnitudes)
        FlatLayout.Slot m = layout.slot(t.keyM()).orElseThrow();
        java.util.Arrays.fill(flat, m.offset(), m.offset() + m.size(), Float.NaN);
      }
    }
    return flat;
  }

  /**
   * VeRA's init, as PEFT's: vera_A and vera_B Kaiming-uniform with gain √2, U(±√(6/fan_in)), drawn
   * from projection_prng_key alone (so every run with that key shares them; the stream is Java's, not
   * torch's, which is why the projections are always saved); λ_b = 0, λ_d = d_initial.
   */
  private void initVera(float[] flat) {
    Random prng = new Random(config.vera().projectionPrngKey());
    for (String key : List.of(VERA_A, VERA_B)) {
      FlatLayout.Slot s = layout.slot(key).orElseThrow();
      double bound = Math.sqrt(6.0 / s.shape()[1]);
      for (int i = 0; i < s.size(); i++) {
        flat[s.offset() + i] = (float) ((prng.nextDouble() * 2 - 1) * bound);
      }
    }
    for (LoraTarget t : targets) {
      FlatLayout.Slot d = layout.slot(t.keyLambdaD()).orElseThrow();
      java.util.Arrays.fill(flat, d.offset(), d.offset() + d.size(), (float) config.vera().dInitial());
    }
  }

  /** An adapter and its values. */
  public record Values(LoraModel model, float[] values) {}

  /**
   * AdaLoRA: this adapter cut down to the ranks {@code pattern} keeps (per "&lt;module&gt;.lora_E", one
   * boolean per rank of this model), as PEFT's resize_state_dict_by_rank_pattern saves it: rows of A
   * and E, columns of B. The pattern goes into the config; ranknum, and so the scaling, stays init_r.
   */
  public Values truncate(float[] flat, Map<String, List<Boolean>> pattern) {
    LoraModel cut = create(structure, config.withAdalora(config.adalora().withRankPattern(pattern)));
    float[] out = new float[cut.layout().size()];
    for (LoraTarget t : targets) {
      List<Boolean> keep = pattern.get(t.module().name() + ".lora_E");
      if (keep == null || keep.size() != t.rank()) {
        throw new IllegalArgumentException("the rank pattern holds " + (keep == null ? "nothing" : keep.size() + " ranks") + " for " + t.module().name()
            + ".lora_E but the module has " + t.rank());
      }
      FlatLayout.Slot a = layout.slot(t.keyAdaA()).orElseThrow();
      FlatLayout.Slot e = layout.slot(t.keyAdaE()).orElseThrow();
      FlatLayout.Slot b = layout.slot(t.keyAdaB()).orElseThrow();
      FlatLayout.Slot ca = cut.layout().slot(t.keyAdaA()).orElseThrow();
      FlatLayout.Slot ce = cut.layout().slot(t.keyAdaE()).orElseThrow();
      FlatLayout.Slot cb = cut.layout().slot(t.keyAdaB()).orElseThrow();
      int in = t.module().in();
      int k = (int) ce.shape()[0];
      int j = 0;
      for (int r = 0; r < t.rank(); r++) {
        if (!keep.get(r)) {
          continue;
        }
        System.arraycopy(flat, a.offset() + r * in, out, ca.offset() + j * in, in);
        out[ce.offset() + j] = flat[e.offset() + r];
        for (int o = 0; o < t.module().out(); o++) {
          out[cb.offset() + o * k + j] = flat[b.offset() + o * t.rank() + r];
        }
        j++;
      }
    }
    for (String bias : biases) {
      FlatLayout.Slot from = layout.slot(biasKey(bias)).orElseThrow();
      System.arraycopy(flat, from.offset(), out, cut.layout().slot(cut.biasKey(bias)).orElseThrow().offset(), from.size());
    }
    return new Values(cut, out);
  }

  /** DoRA: whether {@code flat}'s magnitudes are still to be initialized (NaN, as {@link #initialParams} leaves them without weights). */
  public boolean needsMagnitudes(float[] flat) {
    return config.useDora() && targets.stream().anyMatch(t -> Float.isNaN(flat[layout.slot(t.keyM()).orElseThrow().offset()]));
  }

  /**
   * DoRA's initial magnitudes, as PEFT's DoraLinearLayer.update_layer: m = ‖W0 + s·B·A‖ per output
   * row of torch's [out, in] weight (for GPT-2's Conv1D, of its transpose), from {@code flat}'s A
   * and B; ‖W0‖ when B = 0. Returns a copy of flat with the magnitudes set.
   */
  public float[] withMagnitudes(float[] flat) {
    float[] out = flat.clone();
    try (NDManager m = base().manager().newSubManager()) {
      for (LoraTarget t : targets) {
        NDArray n = rowNorms(m, t, flat);
        FlatLayout.Slot slot = layout.slot(t.keyM()).orElseThrow();
        System.arraycopy(n.toType(ai.djl.ndarray.types.DataType.FLOAT32, false).toFloatArray(), 0, out, slot.offset(), slot.size());
      }
    }
    return out;
  }

  /** ‖W0 + s·B·A‖ over the input dimension, (out): the stored weight is (in, out), so the norm runs down its columns. */
  private NDArray rowNorms(NDManager m, LoraTarget t, float[] flat) {
    NDArray w = base().weight(t.module().weightKey()).add(delta(m, t, flat)); // (in, out)
    return w.square().sum(new int[] {0}).sqrt();
  }

  private NDArray tensor(NDManager m, float[] flat, String key) {
    FlatLayout.Slot s = layout.slot(key).orElseThrow();
    return m.create(layout.slice(flat, s), new Shape(s.shape())).toType(base().dtype(), false);
  }

  /**
   * ΔWᵀ of one target in the compute layout (in, out): s·Aᵀ·Bᵀ for LoRA, and for VeRA
   * (A_sliced ᵀ·diag(λ_d))·B_slicedᵀ·diag(λ_b), with A_sliced = vera_A[:, :in], B_sliced = vera_B[:out, :].
   */
  private NDArray delta(NDManager m, LoraTarget t, float[] flat) {
    if (config.vera().on()) {
      NDArray a = tensor(m, flat, VERA_A).get(new ai.djl.ndarray.index.NDIndex(":, :" + t.module().in())); // (r, in)
      NDArray b = tensor(m, flat, VERA_B).get(new ai.djl.ndarray.index.NDIndex(":" + t.module().out() + ", :")); // (out, r)
      return a.transpose().mul(tensor(m, flat, t.keyLambdaD())).matMul(b.transpose()).mul(tensor(m, flat, t.keyLambdaB()));
    }
    if (config.adalora().on()) {
      NDArray ae = tensor(m, flat, t.keyAdaA()).mul(tensor(m, flat, t.keyAdaE())); // (k, in) ⊙ (k, 1)
      return ae.transpose().matMul(tensor(m, flat, t.keyAdaB()).transpose()).mul(t.scale());
    }
    return tensor(m, flat, t.keyA()).transpose().matMul(tensor(m, flat, t.keyB()).transpose()).mul(t.scale());
  }

  @Override
  public Bound bind(NDManager step, float[] flat, boolean grad, long dropoutSeed) {
    List<NDArray> leaves = new ArrayList<>();
    List<NDArray> used = new ArrayList<>(); // the leaves in the compute dtype (a recorded cast under fp16)
    for (FlatLayout.Slot s : layout.slots()) {
      NDArray a = Trainable.leaf(step, layout, flat, s, base().dtype(), grad);
      leaves.add(a);
      used.add(Ops.cast(a, base().dtype()));
    }
    Map<String, NDArray> byKey = new HashMap<>();
    for (int i = 0; i < used.size(); i++) {
      byKey.put(layout.slots().get(i).key(), used.get(i));
    }
    Map<String, NDArray> overrides = new HashMap<>();
    for (String bias : biases) {
      overrides.put(bias, byKey.get(biasKey(bias)));
    }
    Map<String, LoraDelta.Factors> factors = new LinkedHashMap<>();
    for (int i = 0; i < targets.size(); i++) {
      LoraTarget t = targets.get(i);
      Optional<LoraDelta.Dora> dora = Optional.empty();
      if (config.useDora()) {
        // ‖W0 + s·B·A‖ per output, detached as PEFT detaches it (DoRA paper, section 4.3), from this pass's values or the fixed ones
        NDArray norm = normsAt == null ? rowNorms(step, t, flat).stopGradient() : rowNorms(step, t, normsAt);
        NDArray w = base().weight(t.module().weightKey());
        Optional<NDArray> bias = t.module().biasKey().map(k -> overrides.getOrDefault(k, base().weight(k)));
        dora = Optional.of(new LoraDelta.Dora(byKey.get(t.keyM()), norm, w, bias));
      }
      if (config.vera().on()) {
        NDArray a = byKey.get(VERA_A).get(new ai.djl.ndarray.index.NDIndex(":, :" + t.module().in())); // (r, in)
        NDArray b = byKey.get(VERA_B).get(new ai.djl.ndarray.index.NDIndex(":" + t.module().out() + ", :")); // (out, r)
        factors.put(t.module().name(), new LoraDelta.Factors(a, b, 1.0, i, dora,
            Optional.of(new LoraDelta.Vera(byKey.get(t.keyLambdaB()), byKey.get(t.keyLambdaD())))));
      } else if (config.adalora().on()) { // PEFT's SVDLinear: x·(A⊙E)ᵀ·Bᵀ·scaling/ranknum
        factors.put(t.module().name(), new LoraDelta.Factors(byKey.get(t.keyAdaA()).mul(byKey.get(t.keyAdaE())), byKey.get(t.keyAdaB()), t.scale(), i,
            dora, Optional.empty()));
      } else {
        factors.put(t.module().name(), new LoraDelta.Factors(byKey.get(t.keyA()), byKey.get(t.keyB()), t.scale(), i, dora, Optional.empty()));
      }
    }
    Map<String, List<String>> groups = new LinkedHashMap<>();
    for (LoraTarget t : config.vera().on() ? List.<LoraTarget>of() : targets) { // VeRA's A is shared: nothing to fuse
      groups.computeIfAbsent(t.module().inputGroup(), g -> new ArrayList<>()).add(t.module().name());
    }
    ForwardContext ctx = new ForwardContext(step, overrides, new LoraDelta(step, factors, groups, config.loraDropout(), dropoutSeed));
    return new Bound(ctx, leaves);
  }

  /** W ← W + s·B·A for every target (and trained biases replace the base's). */
  public void merge(float[] flat) {
    apply(flat, 1);
  }

  /** W ← W − s·B·A, restoring the base up to float rounding; biases are restored exactly. */
  public void unmerge(float[] flat) {
    apply(flat, -1);
  }

  private static void replace(NDManager m, NDArray w, float[] values) {
    w.set(new ai.djl.ndarray.index.NDIndex(":"), m.create(values, w.getShape()).toType(w.getDataType(), false));
  }

  private void apply(float[] flat, int sign) {
    CausalLM base = base();
    try (NDManager m = base.manager().newSubManager()) {
      for (LoraTarget t : targets) {
        NDArray delta = delta(m, t, flat); // (in, out), the compute layout
        NDArray w = base.weight(t.module().weightKey());
        if (!config.useDora()) {
          w.addi(delta.mul(sign));
        } else if (sign > 0) { // W' = (m/n)·(W0 + ΔW), n = ‖W0 + ΔW‖ per output (PEFT's DoRA merge)
          NDArray mag = m.create(layout.slice(flat, layout.slot(t.keyM()).orElseThrow()), new Shape(t.module().out())).toType(base.dtype(), false);
          w.addi(delta);
          NDArray n = w.square().sum(new int[] {0}).sqrt();
          w.muli(mag.div(n));
          NDArray kept = n.duplicate();
          kept.attach(base.manager());
          mergedNorms.put(t.module().name(), kept);
        } else { // W0 = W'·(n/m) − ΔW with the n cached at merge
          NDArray mag = m.create(layout.slice(flat, layout.slot(t.keyM()).orElseThrow()), new Shape(t.module().out())).toType(base.dtype(), false);
          NDArray n = mergedNorms.remove(t.module().name());
          if (n == null) {
            throw new IllegalStateException(t.module().name() + " was not merged by this model: a DoRA unmerge needs the norms of its merge");
          }
          w.muli(n.div(mag));
          w.subi(delta);
          n.close();
        }
      }
      for (String bias : biases) {
        NDArray w = base.weight(bias);
        if (sign > 0) {
          mergedOriginalBias.put(bias, w.toType(ai.djl.ndarray.types.DataType.FLOAT32, false).toFloatArray());
          replace(m, w, layout.slice(flat, layout.slot(biasKey(bias)).orElseThrow()));
        } else if (mergedOriginalBias.containsKey(bias)) {
          replace(m, w, mergedOriginalBias.remove(bias));
        }
      }
    }
  }
}
