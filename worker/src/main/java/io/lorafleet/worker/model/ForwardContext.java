package io.lorafleet.worker.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import java.util.Map;
import java.util.Optional;

/**
 * What one forward pass runs with: the step's NDManager (every intermediate is attached to it and
 * freed when the step closes), trainable stand-ins for base tensors (full fine-tuning, trained
 * biases), keyed by HF name in compute layout, and the additive delta on projections (LoRA).
 */
public record ForwardContext(NDManager manager, Map<String, NDArray> overrides, LinearDelta delta) {
  public ForwardContext {
    overrides = Map.copyOf(overrides);
  }

  public static ForwardContext inference(NDManager manager, LinearDelta delta) {
    return new ForwardContext(manager, Map.of(), delta);
  }

  public Optional<NDArray> override(String name) {
    return Optional.ofNullable(overrides.get(name));
  }

  /** Moves a result computed with a long-lived array as first operand into the step's scope. */
  public NDArray local(NDArray a) {
    a.attach(manager);
    return a;
  }
}
