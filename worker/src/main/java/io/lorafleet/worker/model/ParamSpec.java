package io.lorafleet.worker.model;

import java.util.Arrays;

/**
 * One named base tensor, with its shape as stored in the Hugging Face checkpoint. {@code transposed}
 * marks nn.Linear weights (HF layout out×in), which lorafleet keeps as in×out in memory so that every
 * projection is {@code x.matMul(w)}; GPT-2's Conv1D weights are in×out already.
 */
public record ParamSpec(String name, long[] hfShape, boolean transposed) {
  public ParamSpec {
    hfShape = hfShape.clone();
    if (transposed && hfShape.length != 2) {
      throw new IllegalArgumentException("only 2-D weights can be transposed, " + name + " has shape " + Arrays.toString(hfShape));
    }
  }

  @Override
  public long[] hfShape() {
    return hfShape.clone();
  }

  public long[] computeShape() {
    return transposed ? new long[] {hfShape[1], hfShape[0]} : hfShape.clone();
  }

  public long numel() {
    long n = 1;
    for (long d : hfShape) {
      n *= d;
    }
    return n;
  }
}
