package io.lorafleet.worker.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.model.Djl;
import io.lorafleet.worker.model.Ops;

/**
 * Causal-LM cross-entropy summed over target tokens: −Σ log p(labels[b][t+1] | ids[b][..t]) over
 * positions whose label is not -100. The sum, not the mean, is returned so that workers can add
 * their sums and the driver divides once by the global token count (the token-weighted mean).
 */
public final class TokenLoss {
  private TokenLoss() {}

  /** Scalar loss sum for logits (B, T, V); a batch of length 1 has no targets and yields 0. */
  public static NDArray sum(NDManager m, NDArray logits, Batch batch) {
    return sum(m, logits, batch, 0);
  }

  /**
   * Scalar loss sum for the logits (B, T', V) of positions [from, from + T') of the batch: the
   * predictions of those positions' next tokens. Chunks of positions add up to the whole.
   */
  public static NDArray sum(NDManager m, NDArray logits, Batch batch, int from) {
    int b = batch.size();
    int t = batch.seqLen();
    int tc = (int) logits.getShape().get(1);
    if (t < 2) {
      return m.zeros(new Shape(), Djl.masterDtype(logits.getDataType()));
    }
    // Targets are shifted instead of the logits sliced: slicing (B, T−1, V) out of (B, T, V) costs a
    // vocabulary-sized zero fill and copy in the backward pass. The last position has no target.
    long[] idx = new long[b * tc];
    float[] valid = new float[b * tc];
    int[][] labels = batch.labels();
    for (int r = 0; r < b; r++) {
      for (int i = 0; i < tc; i++) {
        int pos = from + i;
        int y = pos + 1 < t ? labels[r][pos + 1] : Batch.IGNORE;
        boolean ok = y != Batch.IGNORE;
        if (ok && (y < 0 || y >= logits.getShape().get(2))) {
          throw new IllegalArgumentException("label " + y + " at row " + r + ", position " + (pos + 1) + " is outside the vocabulary [0, " + logits.getShape().get(2) + ")");
        }
        idx[r * tc + i] = ok ? y : 0;
        valid[r * tc + i] = ok ? 1f : 0f;
      }
    }
    NDArray logp = Ops.wide(logits).logSoftmax(-1); // (B, T', V), in fp32 under fp16 compute
    NDArray target = m.create(idx, new Shape(b, tc, 1));
    NDArray picked = logp.gather(target, 2).reshape(b, tc); // (B, T')
    NDArray mask = m.create(valid, new Shape(b, tc)).toType(logp.getDataType(), false);
    return picked.mul(mask).sum().neg();
  }

  /** Returns the scalar as a double, whatever the compute dtype. */
  public static double value(NDArray scalar) {
    return scalar.toType(DataType.FLOAT64, false).getDouble();
  }
}
