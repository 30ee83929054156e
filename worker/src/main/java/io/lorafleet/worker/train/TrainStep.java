package io.lorafleet.worker.train;

import io.lorafleet.worker.model.Djl;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.training.GradientCollector;
import io.lorafleet.worker.lora.FlatLayout;
import io.lorafleet.worker.model.Batch;
import java.util.List;

/**
 * Forward and backward over micro-batches, accumulating gradients of the summed token loss. Each
 * micro-batch runs in its own NDManager scope, so native memory is released before the next.
 */
public final class TrainStep {
  /**
   * DJL's PyTorch engine allows one GradientCollector per JVM at a time, so tasks sharing an
   * executor JVM (local[N], or several cores per executor) take turns for forward+backward.
   */
  private static final Object AUTOGRAD = new Object();

  private TrainStep() {}

  /**
   * @param dropoutSeed a seed unique to this (step, worker); micro-batch i uses dropoutSeed + i
   */
  public static StepResult run(Trainable trainable, float[] params, List<Batch> microBatches, long dropoutSeed) {
    FlatLayout layout = trainable.layout();
    if (params.length != layout.size()) {
      throw new IllegalArgumentException("parameter buffer has " + params.length + " floats but the layout needs " + layout.size());
    }
    float[] grad = new float[layout.size()];
    double loss = 0;
    long tokens = 0;
    for (int i = 0; i < microBatches.size(); i++) {
      Batch batch = microBatches.get(i);
      synchronized (AUTOGRAD) {
        loss += microBatch(trainable, params, batch, dropoutSeed < 0 ? -1 : dropoutSeed + i, grad);
      }
      tokens += batch.targetTokens();
    }
    return new StepResult(grad, loss, tokens);
  }

  /** Forward and backward of one micro-batch; adds its gradient into {@code grad} and returns its loss sum. */
  private static double microBatch(Trainable trainable, float[] params, Batch batch, long seed, float[] grad) {
    try (NDManager step = trainable.base().manager().newSubManager()) {
      Trainable.Bound bound;
      NDArray lossSum;
      try (GradientCollector gc = Djl.engine().newGradientCollector()) {
        // bind inside the collector: views of the leaves (transposes) must be recorded by autograd
        bound = trainable.bind(step, params, true, seed);
        NDArray logits = trainable.base().forward(bound.context(), batch);
        lossSum = TokenLoss.sum(step, logits, batch);
        gc.backward(lossSum);
      }
      List<FlatLayout.Slot> slots = trainable.layout().slots();
      for (int j = 0; j < slots.size(); j++) {
        NDArray g = bound.leaves().get(j).getGradient();
        g.attach(step);
        float[] gv = g.toType(DataType.FLOAT32, false).toFloatArray();
        int off = slots.get(j).offset();
        for (int k = 0; k < gv.length; k++) {
          grad[off + k] += gv[k];
        }
      }
      return TokenLoss.value(lossSum);
    }
  }

  /** Loss sum and token count without gradients (evaluation). */
  public static StepResult evaluate(Trainable trainable, float[] params, List<Batch> batches) {
    double loss = 0;
    long tokens = 0;
    for (Batch batch : batches) {
      try (NDManager step = trainable.base().manager().newSubManager()) {
        Trainable.Bound bound = trainable.bind(step, params, false, -1);
        loss += TokenLoss.value(TokenLoss.sum(step, trainable.base().forward(bound.context(), batch), batch));
        tokens += batch.targetTokens();
      }
    }
    return new StepResult(new float[0], loss, tokens);
  }
}
