package io.lorafleet.worker.model;

import java.util.Optional;

/**
 * A projection y = x·W + b that LoRA can target. {@code name} is the module path as in the HF
 * checkpoint ("model.layers.0.self_attn.q_proj", "transformer.h.0.attn.c_attn"); {@code layer} is
 * the decoder layer index, or -1 for modules outside the stack (lm_head).
 */
public record LinearSpec(String name, int layer, int in, int out, boolean hasBias) {
  public String weightKey() {
    return name + ".weight";
  }

  public Optional<String> biasKey() {
    return hasBias ? Optional.of(name + ".bias") : Optional.empty();
  }

  /** The last path component, which PEFT's target_modules names match. */
  public String shortName() {
    return name.substring(name.lastIndexOf('.') + 1);
  }
}
