package io.lorafleet.worker.model;

import java.util.Optional;

/**
 * A projection y = x·W + b that LoRA can target. {@code name} is the module path as in the HF
 * checkpoint ("model.layers.0.self_attn.q_proj", "transformer.h.0.attn.c_attn"); {@code layer} is
 * the decoder layer index, or -1 for modules outside the stack (lm_head). Projections that read the
 * same input tensor share an {@code inputGroup} (Llama's q/k/v, and gate/up), which lets LoRA
 * compute their x·Aᵀ products in one pass over x.
 */
public record LinearSpec(String name, int layer, int in, int out, boolean hasBias, String inputGroup) {
  /** A projection that shares its input with no other. */
  public LinearSpec(String name, int layer, int in, int out, boolean hasBias) {
    this(name, layer, in, out, hasBias, name);
  }

  public String weightKey() {
    return name + ".weight";
  }

  public Optional<String> biasKey() {
    return hasBias ? Optional.of(name + ".bias") : Optional.empty();
  }

  /**
   * Whether a quantized base stores this projection quantized: every projection of the decoder
   * stack, not {@code lm_head} (bitsandbytes and transformers keep the output layer, embeddings and
   * norms in full precision).
   */
  public boolean quantizable() {
    return layer >= 0;
  }

  /** The last path component, which PEFT's target_modules names match. */
  public String shortName() {
    return name.substring(name.lastIndexOf('.') + 1);
  }
}
