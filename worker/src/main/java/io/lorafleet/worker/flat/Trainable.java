package io.lorafleet.worker.flat;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.lorafleet.worker.model.Dropout;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.Djl;
import io.lorafleet.worker.model.ForwardContext;
import io.lorafleet.worker.model.Ops;
import java.util.List;

/**
 * What a training step optimises: a set of tensors laid out in one flat buffer (the LoRA factors,
 * or every base tensor for full fine-tuning), and how to run the base model with given values.
 */
public interface Trainable {
  LanguageModel base();

  FlatLayout layout();

  /**
   * Creates the trainable tensors from {@code flat} in {@code step} and a context that uses them.
   * With {@code grad} the tensors are autograd leaves, in {@link FlatLayout#slots()} order.
   *
   * @param dropout the masks of training mode over the batch's rows; {@link Dropout#OFF} for
   *     evaluation
   */
  Bound bind(NDManager step, float[] flat, boolean grad, Dropout dropout);

  /**
   * The autograd leaf for one slot: {@code flat}'s values in the master dtype of {@code compute}
   * (fp32 under fp16 compute), requiring a gradient when {@code grad}. The forward pass uses it
   * through {@link Ops#cast} to the compute dtype.
   */
  static NDArray leaf(NDManager step, FlatLayout layout, float[] flat, FlatLayout.Slot s, DataType compute, boolean grad) {
    NDArray a = step.create(layout.slice(flat, s), new Shape(s.shape())).toType(Djl.masterDtype(compute), false);
    if (grad && !s.frozen()) {
      a.setRequiresGradient(true);
    }
    return a;
  }

  /** A bound context and its leaves, one per layout slot. */
  record Bound(ForwardContext context, List<NDArray> leaves) {}
}
