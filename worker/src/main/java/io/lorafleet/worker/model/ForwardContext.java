package io.lorafleet.worker.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import java.util.Map;
import java.util.Optional;

/**
 * What one forward pass runs with: the step's NDManager (every intermediate is attached to it and
 * freed when the step closes), trainable stand-ins for base tensors (full fine-tuning, trained
 * biases), keyed by HF name in compute layout, the additive delta on projections (LoRA), and the
 * dropout masks of training mode ({@link Dropout#OFF}: eval mode, as evaluation and generation run).
 */
public record ForwardContext(NDManager manager, Map<String, NDArray> overrides, LinearDelta delta, Dropout dropout) {
  public ForwardContext {
    overrides = Map.copyOf(overrides);
  }

  /** Eval mode: no dropout. */
  public ForwardContext(NDManager manager, Map<String, NDArray> overrides, LinearDelta delta) {
    this(manager, overrides, delta, Dropout.OFF);
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

  /** The base model's dropout {@code site} on x (rows first): x itself in eval mode. */
  public NDArray drop(NDArray x, Dropout.Site site) {
    return dropout.model(x, site.name(), site.p(), 0);
  }

  /** As {@link #drop(NDArray, Dropout.Site)} for the block of a larger tensor whose third axis starts at {@code offset}. */
  public NDArray drop(NDArray x, Dropout.Site site, long offset) {
    return dropout.model(x, site.name(), site.p(), offset);
  }
}
