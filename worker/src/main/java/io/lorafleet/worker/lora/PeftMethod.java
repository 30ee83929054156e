package io.lorafleet.worker.lora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.worker.flat.FlatLayout;
import java.io.Serializable;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.Random;
import java.util.function.Function;

/**
 * One PEFT method over LoRA's targets, as PEFT gives each method its own tuner (tuners/&lt;method&gt;/)
 * and each LoRA variant its own LoraVariant: the tensors it trains per target, their init, its
 * forward term, its ΔW for merge and unmerge, its adapter_config.json fields, and what it cannot
 * do. LoRA, DoRA, VeRA and AdaLoRA are the built-in ones ({@link PeftMethods}); another is one class
 * implementing this and its {@link Provider}, registered through {@link java.util.ServiceLoader}.
 * A method is an immutable value: its settings are its record components.
 */
public interface PeftMethod extends Serializable {
  /** The name {@code train --peft-type} takes: lora, dora, vera, adalora, or a registered method's (train_config.yaml records it). */
  @JsonProperty("name")
  String name();

  /** PEFT's peft_type in adapter_config.json. */
  String peftType();

  /** Refuses the LoraConfig options this method does not take, naming them. */
  default void validate(LoraConfig c) {}

  /** The rank of {@code module}: rank_pattern's, else r. */
  default int rank(LoraConfig c, String module) {
    return LoraConfig.patternValue(c.rankPattern(), module).orElse(c.r());
  }

  /** The scaling s in ΔW = s·B·A: lora_alpha/r, or lora_alpha/√r with use_rslora. */
  default double scale(LoraConfig c, String module) {
    int r = rank(c, module);
    double alpha = c.alphaFor(module);
    return c.useRslora() ? alpha / Math.sqrt(r) : alpha / r;
  }

  /** Adds this method's tensors for {@code targets} to the layout, in target order. */
  void addSlots(FlatLayout.Builder b, LoraConfig c, List<LoraTarget> targets);

  /** PEFT's init of this method's tensors in {@code flat}, drawing from {@code rng} (biases are the model's). */
  void init(LoraModel m, float[] flat, Random rng);

  /** After PEFT's init and the biases: values the init leaves to the base's weights (DoRA's magnitudes), or a marker that they are still owed. */
  default float[] afterInit(LoraModel m, float[] flat) {
    return flat;
  }

  /** Whether {@code flat} still lacks values only the base's weights give (DoRA's magnitudes, on a model built without them). */
  default boolean needsBaseValues(LoraModel m, float[] flat) {
    return false;
  }

  /** A copy of {@code flat} with the values only the base's weights give; needs the loaded base. */
  default float[] withBaseValues(LoraModel m, float[] flat) {
    return flat;
  }

  /**
   * Copies into {@code params} the values a process holding the base computed ({@code got}, from
   * {@link #withBaseValues}), checking each; for the driver, whose model has no weights.
   */
  default void takeBaseValues(LoraModel m, float[] params, float[] got) {}

  /** ΔWᵀ of one target in the compute layout (in, out), from tensors by adapter key. */
  NDArray delta(Function<String, NDArray> tensor, LoraTarget t);

  /** The forward factors of one target, from the tensors one pass binds. */
  LoraDelta.Factors factors(LoraModel.Binding b, LoraTarget t, int index);

  /** Whether targets reading one input may share one product x·[A_1; …; A_n]ᵀ (not when A is shared, as VeRA's). */
  default boolean fusesInputs() {
    return true;
  }

  /**
   * W ← W + ΔW (sign 1) or W − ΔW (sign −1) for one target; {@code w} is the base's weight in the
   * compute layout (in, out) and {@code delta} this target's ΔWᵀ.
   */
  default void merge(LoraModel m, NDManager scope, LoraTarget t, NDArray w, NDArray delta, float[] flat, int sign) {
    w.addi(delta.mul(sign));
  }

  /** adapter_config.json for {@code model}, as PEFT writes this method's config. */
  ObjectNode configJson(LoraModel model);

  /** Why checkpoints of this method cannot be averaged, if they cannot. */
  default Optional<String> notAveraged() {
    return Optional.empty();
  }

  /** Why this method cannot train over a quantized base, if it cannot. */
  default Optional<String> notOverQuantizedBase() {
    return Optional.empty();
  }

  /** The kind named when an adapter of this method is refused a batch of mixed adapters (its forward is not an additive term per row). */
  default Optional<String> notMixable() {
    return Optional.empty();
  }

  /** Why an adapter of this method cannot be trained further from its saved form, if it cannot. */
  default Optional<String> notContinued() {
    return Optional.empty();
  }

  /** This method as a checkpoint must share it with the job that resumes it (AdaLoRA's allocation may differ). */
  default PeftMethod identity() {
    return this;
  }

  /** The rank as a model card states it. */
  default String rankText(LoraConfig c) {
    return Integer.toString(c.r());
  }

  /**
   * Reads and makes methods: one per peft_type (and LoRA's variants, told apart by their own
   * fields), and one per --peft-type name. Registered in META-INF/services.
   */
  interface Provider {
    /** The --peft-type names this provider makes. */
    List<String> names();

    /** The peft_type values of adapter_config.json this provider reads. */
    List<String> peftTypes();

    /**
     * The method that {@code n} (adapter_config.json, whose peft_type is one of {@link #peftTypes})
     * describes, with the LoraConfig fields it implies; {@code fields} holds what every LoRA-family
     * config holds alike ({@link AdapterFormat.Fields#lora} reads the rest as LoRA does).
     */
    LoraConfig read(Path file, JsonNode n, AdapterFormat.Fields fields);

    /**
     * The method named {@code name} with its settings from {@code options} (its own flags, by name
     * without "--"; absent ones at their defaults) over {@code base}, the config the other flags made.
     */
    LoraConfig configure(String name, PeftMethods.Options options, LoraConfig base);
  }
}
