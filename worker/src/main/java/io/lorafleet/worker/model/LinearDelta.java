package io.lorafleet.worker.model;

import ai.djl.ndarray.NDArray;
import java.util.Optional;

/** An additive term on a projection's output, y = x·W + b + delta(x). LoRA implements it. */
@FunctionalInterface
public interface LinearDelta {
  LinearDelta NONE = (module, x) -> Optional.empty();

  /** @param x the projection input (..., in); returns (..., out) or empty when the module is untouched. */
  Optional<NDArray> delta(LinearSpec module, NDArray x);
}
