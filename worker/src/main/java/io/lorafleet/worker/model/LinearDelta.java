package io.lorafleet.worker.model;

import ai.djl.ndarray.NDArray;

/** An additive term on a projection's output, y = x·W + b + delta(x). LoRA implements it. */
@FunctionalInterface
public interface LinearDelta {
  LinearDelta NONE = (module, x, y) -> y;

  /**
   * @param x the projection input (..., in)
   * @param y the frozen projection's output x·W + b (..., out)
   * @return y + delta(x), or y itself when the module is untouched
   */
  NDArray addTo(LinearSpec module, NDArray x, NDArray y);
}
