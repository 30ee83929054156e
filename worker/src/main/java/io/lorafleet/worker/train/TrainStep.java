package io.lorafleet.worker.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import io.lorafleet.worker.flat.FlatLayout;
import io.lorafleet.worker.flat.Trainable;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.model.Dropout;
import java.util.List;

/**
 * Forward and backward over micro-batches, accumulating gradients of the summed token loss. Each
 * micro-batch runs in its own NDManager scope, so native memory is released before the next.
 */
public final class TrainStep {
  private TrainStep() {}

  /**
   * @param dropout what the step drops ({@link Dropout.Plan#NONE}: nothing); each row's masks are
   *     keyed by its batch row key as well ({@link Dropout})
   */
  public static StepResult run(Trainable trainable, float[] params, List<Batch> microBatches, Dropout.Plan dropout) {
    return run(trainable, params, microBatches, dropout, 1.0);
  }

  /**
   * As {@link #run(Trainable, float[], List, Dropout.Plan)}, back-propagating {@code lossScale} times the loss
   * (fp16 loss scaling): the gradient sums come back scaled, the loss sum does not.
   */
  public static StepResult run(Trainable trainable, float[] params, List<Batch> microBatches, Dropout.Plan dropout, double lossScale) {
    return accumulate(trainable, params, microBatches, dropout, (batch, masks, grad) -> microBatch(trainable, params, batch, masks, grad, lossScale));
  }

  /** One micro-batch's forward and backward under its dropout masks: adds its gradient into grad, returns its loss sum. */
  @FunctionalInterface
  interface MicroStep {
    double run(Batch batch, Dropout masks, float[] grad);
  }

  /** Runs {@code step} over the micro-batches, each with its rows' dropout masks, adding gradients and losses. */
  static StepResult accumulate(Trainable trainable, float[] params, List<Batch> microBatches, Dropout.Plan dropout, MicroStep step) {
    FlatLayout layout = trainable.layout();
    if (params.length != layout.size()) {
      throw new IllegalArgumentException("parameter buffer has " + params.length + " floats but the layout needs " + layout.size());
    }
    float[] grad = new float[layout.size()];
    double loss = 0;
    long tokens = 0;
    for (int i = 0; i < microBatches.size(); i++) {
      Batch batch = microBatches.get(i);
      loss += step.run(batch, dropout.over(batch), grad);
      tokens += batch.targetTokens();
    }
    return new StepResult(grad, loss, tokens);
  }

  /**
   * Forward and backward of one micro-batch; adds its gradient into {@code grad} and returns its loss
   * sum. Autograd is driven directly (grad mode on for this thread, then backward from the loss)
   * rather than through DJL's GradientCollector, which allows one collector per JVM: libtorch's grad
   * mode is thread-local and its engine runs independent graphs from several threads, so tasks that
   * share an executor JVM (local[N], several cores per executor) train at the same time. The frozen
   * base they share is only read.
   */
  private static double microBatch(Trainable trainable, float[] params, Batch batch, Dropout masks, float[] grad, double lossScale) {
    try (NDManager step = trainable.base().manager().newSubManager()) {
      Trainable.Bound bound;
      NDArray lossSum;
      boolean gradMode = JniUtils.isGradMode();
      JniUtils.setGradMode(true);
      try {
        // bind with grad mode on: views of the leaves (transposes) must be recorded by autograd
        bound = trainable.bind(step, params, true, masks);
        NDArray logits = trainable.base().forward(bound.context(), batch);
        lossSum = lossSum(step, logits, batch);
        JniUtils.backward((PtNDArray) lossSum, (PtNDArray) seedGradient(step, lossSum, lossScale), false, false);
      } finally {
        JniUtils.setGradMode(gradMode);
      }
      double loss = TokenLoss.value(lossSum);
      collect(trainable, bound, grad, loss);
      return loss;
    }
  }

  /** The batch's loss sum: per row for a classification batch (an encoder's logits), else per target token. */
  static NDArray lossSum(NDManager step, NDArray logits, Batch batch) {
    return batch.targets().isPresent() ? SequenceLoss.sum(step, logits, batch.targets().get()) : TokenLoss.sum(step, logits, batch);
  }

  /** The gradient the backward pass starts from: d(scale · loss)/d(loss). */
  static NDArray seedGradient(NDManager m, NDArray loss, double lossScale) {
    return m.full(loss.getShape(), (float) lossScale, loss.getDataType());
  }

  /** Adds the leaves' gradients into {@code grad}; a non-finite one fails the step, naming the tensor. */
  static void collect(Trainable trainable, Trainable.Bound bound, float[] grad, double loss) {
    List<FlatLayout.Slot> slots = trainable.layout().slots();
    for (int j = 0; j < slots.size(); j++) {
      if (slots.get(j).frozen()) {
        continue; // no gradient: it stays 0 in the push
      }
      NDArray leaf = bound.leaves().get(j);
      NDArray g = leaf.getGradient();
      g.attach(leaf.getManager());
      float[] gv = g.toType(DataType.FLOAT32, false).toFloatArray();
      int off = slots.get(j).offset();
      double sum = 0; // non-finite if any entry is NaN or infinite
      for (int k = 0; k < gv.length; k++) {
        grad[off + k] += gv[k];
        sum += gv[k];
      }
      if (!Double.isFinite(sum)) {
        throw new NonFiniteGradientException("non-finite gradient for '" + slots.get(j).key() + "' (loss " + loss + "): the step diverged or "
            + "overflowed; lower the learning rate", off);
      }
    }
  }

  /** Loss sum and token count without gradients (evaluation). */
  public static StepResult evaluate(Trainable trainable, float[] params, List<Batch> batches) {
    double loss = 0;
    long tokens = 0;
    for (Batch batch : batches) {
      try (NDManager step = trainable.base().manager().newSubManager()) {
        Trainable.Bound bound = trainable.bind(step, params, false, Dropout.OFF);
        loss += TokenLoss.value(lossSum(step, trainable.base().forward(bound.context(), batch), batch));
        tokens += batch.targetTokens();
      }
    }
    return new StepResult(new float[0], loss, tokens);
  }
}
