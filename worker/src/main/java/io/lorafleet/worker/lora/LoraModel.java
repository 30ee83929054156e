package io.lorafleet.worker.lora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.lorafleet.worker.flat.FlatLayout;
import io.lorafleet.worker.flat.Trainable;
import io.lorafleet.worker.model.BaseModel;
import io.lorafleet.worker.model.Dropout;
import io.lorafleet.worker.model.LanguageModel;
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
import java.util.Random;
import java.util.Set;
import java.util.stream.Collectors;

/**
 * LoRA injected into a frozen {@link LanguageModel}, with PEFT's target matching
 * (peft/tuners/tuners_utils.py check_target_module_exists): a listed name matches a module whose
 * path equals it or ends with "." + name; "all-linear" takes every projection but the output
 * layer; a regex must match the whole path. Only the factors (and biases, if asked) are trainable.
 */
public final class LoraModel implements Trainable {
  private final BaseModel structure;
  private final LoraConfig config;
  private final List<LoraTarget> targets;
  private final List<String> biases;
  private final FlatLayout layout;
  private final Map<String, float[]> mergedOriginalBias = new HashMap<>();
  /** What a method keeps between merge and unmerge, per module (DoRA: ‖W0 + ΔW‖ per row, which unmerge divides back out, as PEFT caches it). */
  private final Map<String, NDArray> mergeState = new HashMap<>();
  /** DoRA, for gradient checks only: the values whose ‖W0 + s·B·A‖ every forward pass uses, or null for the current ones. */
  private final float[] normsAt;

  private LoraModel(BaseModel structure, LoraConfig config, List<LoraTarget> targets, List<String> biases, float[] normsAt) {
    this.structure = structure;
    this.config = config;
    this.targets = List.copyOf(targets);
    this.biases = List.copyOf(biases);
    this.normsAt = normsAt;
    FlatLayout.Builder b = FlatLayout.builder();
    config.method().addSlots(b, config, targets);
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
   * I/O but cannot train or merge (that needs the loaded {@link LanguageModel}).
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
    if (!unmatched.isEmpty() || (targets.isEmpty() && !config.targetModules().isEmpty())) {
      Set<String> names = all.stream().map(LinearSpec::shortName).collect(Collectors.toCollection(LinkedHashSet::new));
      throw new IllegalArgumentException("target_modules " + (unmatched.isEmpty() ? config.targetModules() : unmatched)
          + " match no module" + (layers.isEmpty() ? "" : " in layers_to_transform " + layers) + " of this "
          + base.config().modelType() + " model; its projections are: " + String.join(", ", names) + " (or all-linear)");
    }
    Set<String> whole = new LinkedHashSet<>();
    Set<String> targeted = targets.stream().map(t -> t.module().name() + ".bias").collect(Collectors.toSet());
    List<String> saved = savedWhole(base, config.modulesToSave());
    if (targets.isEmpty() && saved.isEmpty()) {
      throw new IllegalArgumentException("target_modules is empty, which trains only the modules saved whole, but this " + base.config().modelType()
          + " model has none: name its projections (" + String.join(", ", all.stream().map(LinearSpec::shortName).collect(Collectors.toCollection(LinkedHashSet::new)))
          + ", or all-linear)");
    }
    Set<String> head = new java.util.HashSet<>(saved);
    for (ParamSpec p : base.params()) {
      if (p.name().endsWith(".bias") && !head.contains(p.name()) && (config.bias().equals("all") || (config.bias().equals("lora_only") && targeted.contains(p.name())))) {
        whole.add(p.name());
      }
    }
    whole.addAll(saved); // an encoder's classification head (and what else modules_to_save names): PEFT's modules_to_save for SEQ_CLS
    return new LoraModel(base, config, targets, new ArrayList<>(whole), null);
  }

  /**
   * The tensors trained whole for modules_to_save {@code modules}: the head when empty; else each
   * module's tensors (a module matches its full path or a ".name" suffix of it, as PEFT matches),
   * which must lie in what an adapter can train whole (the head, BERT's pooler) and cover the head.
   */
  static List<String> savedWhole(BaseModel base, List<String> modules) {
    if (modules.isEmpty()) {
      return base.headTensors();
    }
    if (base.headTensors().isEmpty()) {
      throw new IllegalArgumentException("modules_to_save " + modules + " applies to the sequence classifiers; " + base.config().modelType()
          + " is a causal LM, expected none");
    }
    List<String> optional = base.optionalTensors();
    Set<String> out = new LinkedHashSet<>();
    for (String m : modules) {
      List<String> under = base.params().stream().map(ParamSpec::name).filter(t -> ("." + t).contains("." + m + ".")).toList();
      if (under.isEmpty()) {
        throw new IllegalArgumentException("modules_to_save '" + m + "' names no module of this " + base.config().modelType() + " model; it can train "
            + "whole: " + modulesOf(optional));
      }
      List<String> refused = under.stream().filter(t -> !optional.contains(t)).toList();
      if (!refused.isEmpty()) {
        throw new IllegalArgumentException("modules_to_save '" + m + "' names " + refused.get(0) + (refused.size() > 1 ? " and " + (refused.size() - 1)
            + " more" : "") + ", which lorafleet does not train whole; it can train whole: " + modulesOf(optional));
      }
      out.addAll(under);
    }
    List<String> missing = base.headTensors().stream().filter(t -> !out.contains(t)).toList();
    if (!missing.isEmpty()) {
      throw new IllegalArgumentException("modules_to_save " + modules + " leaves out the classification head (" + modulesOf(missing)
          + "), which is trained from scratch; list it too");
    }
    return base.params().stream().map(ParamSpec::name).filter(out::contains).toList();
  }

  /** The modules (tensor names less ".weight"/".bias") of {@code tensors}, for messages. */
  private static Set<String> modulesOf(List<String> tensors) {
    return tensors.stream().map(t -> t.substring(0, t.lastIndexOf('.'))).collect(Collectors.toCollection(LinkedHashSet::new));
  }

  /**
   * This DoRA model with ‖W0 + s·B·A‖ fixed at {@code at}'s values in every forward pass: the
   * function whose finite differences the (detached-norm) analytic gradient equals. For gradient checks.
   */
  public LoraModel withNormsFixedAt(float[] at) {
    return new LoraModel(structure, config, targets, biases, at.clone());
  }

  /** The loaded base; only a LoraModel created on a {@link LanguageModel} has one. */
  @Override
  public LanguageModel base() {
    if (structure instanceof LanguageModel m) {
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

  /** PEFT's init of the method's tensors (see each {@link PeftMethod}), biases from the base. */
  public float[] initialParams(long seed) {
    float[] flat = new float[layout.size()];
    config.method().init(this, flat, new Random(seed));
    for (String bias : biases) {
      FlatLayout.Slot s = layout.slot(biasKey(bias)).orElseThrow();
      System.arraycopy(structure.hfTensor(bias).toFloatArray(), 0, flat, s.offset(), s.size());
    }
    return config.method().afterInit(this, flat);
  }

  /** An adapter and its values. */
  public record Values(LoraModel model, float[] values) {}

  /** Whether {@code flat} still lacks values only the base's weights give (DoRA's magnitudes, left NaN by {@link #initialParams} without them). */
  public boolean needsBaseValues(float[] flat) {
    return config.method().needsBaseValues(this, flat);
  }

  /** A copy of {@code flat} with the values only the base's weights give (DoRA's initial magnitudes); needs the loaded base. */
  public float[] withBaseValues(float[] flat) {
    return config.method().withBaseValues(this, flat);
  }

  /** Takes into {@code params} the values a worker holding the base computed ({@link #withBaseValues}), checking them. */
  public void takeBaseValues(float[] params, float[] got) {
    config.method().takeBaseValues(this, params, got);
  }

  /** ‖W0 + s·B·A‖ over the input dimension, (out): the stored weight is (in, out), so the norm runs down its columns. */
  NDArray rowNorms(NDManager m, LoraTarget t, float[] flat) {
    NDArray w = base().weight(t.module().weightKey()).add(delta(m, t, flat)); // (in, out)
    return w.square().sum(new int[] {0}).sqrt();
  }

  private NDArray tensor(NDManager m, float[] flat, String key) {
    FlatLayout.Slot s = layout.slot(key).orElseThrow();
    return m.create(layout.slice(flat, s), new Shape(s.shape())).toType(base().dtype(), false);
  }

  /** ‖W0 + s·B·A‖ per output, detached, from {@code flat} or from the values this model's norms are fixed at (gradient checks). */
  NDArray detachedNorms(NDManager step, LoraTarget t, float[] flat) {
    return normsAt == null ? rowNorms(step, t, flat).stopGradient() : rowNorms(step, t, normsAt);
  }

  /** ΔWᵀ of one target in the compute layout (in, out), as its method defines it. */
  private NDArray delta(NDManager m, LoraTarget t, float[] flat) {
    return config.method().delta(key -> tensor(m, flat, key), t);
  }

  /** What a method's factors are made of in one pass: the bound tensors by key (compute dtype), the trained biases, the values. */
  public record Binding(LoraModel model, NDManager step, Map<String, NDArray> byKey, Map<String, NDArray> overrides, float[] flat) {
    public NDArray tensor(String key) {
      return byKey.get(key);
    }
  }

  /** What a method keeps between a merge and its unmerge, per module. */
  Map<String, NDArray> mergeState() {
    return mergeState;
  }

  @Override
  public Bound bind(NDManager step, float[] flat, boolean grad, Dropout dropout) {
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
    Binding binding = new Binding(this, step, byKey, overrides, flat);
    for (int i = 0; i < targets.size(); i++) {
      factors.put(targets.get(i).module().name(), config.method().factors(binding, targets.get(i), i));
    }
    Map<String, List<String>> groups = new LinkedHashMap<>();
    for (LoraTarget t : config.method().fusesInputs() ? targets : List.<LoraTarget>of()) {
      groups.computeIfAbsent(t.module().inputGroup(), g -> new ArrayList<>()).add(t.module().name());
    }
    ForwardContext ctx = new ForwardContext(step, overrides, new LoraDelta(step, factors, groups, config.loraDropout(), dropout), dropout);
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
    LanguageModel base = base();
    try (NDManager m = base.manager().newSubManager()) {
      for (LoraTarget t : targets) {
        NDArray delta = delta(m, t, flat); // (in, out), the compute layout
        NDArray w = base.weight(t.module().weightKey());
        config.method().merge(this, m, t, w, delta, flat, sign);
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
