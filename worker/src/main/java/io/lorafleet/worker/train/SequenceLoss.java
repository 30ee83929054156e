package io.lorafleet.worker.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.lorafleet.worker.model.Ops;

/**
 * Sequence-classification loss summed over rows, as transformers' *ForSequenceClassification
 * computes its mean: cross-entropy of the class logits (B, L) against class ids, or, with one
 * output (num_labels 1, regression), the squared error (MSELoss). The sum lets workers add their
 * parts; the driver divides by the global row count.
 */
public final class SequenceLoss {
  private SequenceLoss() {}

  /** Scalar loss sum of logits (B, L) against one target per row. */
  public static NDArray sum(NDManager m, NDArray logits, float[] targets) {
    int b = (int) logits.getShape().get(0);
    int labels = (int) logits.getShape().get(1);
    NDArray wide = Ops.wide(logits); // fp32 under fp16 compute
    if (labels == 1) {
      NDArray y = m.create(targets, new Shape(b, 1)).toType(wide.getDataType(), false);
      return wide.sub(y).square().sum();
    }
    long[] idx = new long[b];
    for (int r = 0; r < b; r++) {
      float y = targets[r];
      if (y != Math.rint(y) || y < 0 || y >= labels) {
        throw new IllegalArgumentException("row " + r + " has label " + y + " but the head has " + labels + " classes: expected an id in [0, "
            + labels + ")");
      }
      idx[r] = (long) y;
    }
    NDArray picked = wide.logSoftmax(-1).gather(m.create(idx, new Shape(b, 1)), 1); // (B, 1)
    return picked.sum().neg();
  }

  /** The prediction of each row: its arg-max class id, or the regressed value. */
  public static float[] predictions(NDArray logits) {
    int b = (int) logits.getShape().get(0);
    int labels = (int) logits.getShape().get(1);
    float[] v = logits.toType(DataType.FLOAT32, false).toFloatArray();
    float[] out = new float[b];
    for (int r = 0; r < b; r++) {
      int best = 0;
      for (int k = 1; k < labels; k++) {
        if (v[r * labels + k] > v[r * labels + best]) {
          best = k;
        }
      }
      out[r] = labels == 1 ? v[r] : best;
    }
    return out;
  }
}
