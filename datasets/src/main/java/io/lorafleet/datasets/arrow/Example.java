package io.lorafleet.datasets.arrow;

import io.lorafleet.worker.model.Batch;
import java.util.Optional;

/**
 * One tokenized training example: input ids, HF-convention labels (-100 where no loss falls) and,
 * for packed rows, position ids that restart per example. A sequence-classification example holds
 * its class id (or, for regression, its value) in {@code target} instead, and token labels of -100.
 */
public record Example(int[] inputIds, int[] labels, int[] packedPositions, float[] target) implements java.io.Serializable {
  /** An unpacked example (no position ids column). */
  public Example(int[] inputIds, int[] labels) {
    this(inputIds, labels, new int[0], new float[0]);
  }

  /** A causal-LM example, packed when positions are given. */
  public Example(int[] inputIds, int[] labels, int[] packedPositions) {
    this(inputIds, labels, packedPositions, new float[0]);
  }

  /** A sequence-classification example: ids with the tokenizer's special tokens, and one label. */
  public static Example classified(int[] inputIds, float label) {
    int[] none = new int[inputIds.length];
    java.util.Arrays.fill(none, Batch.IGNORE);
    return new Example(inputIds, none, new int[0], new float[] {label});
  }

  /** Position ids of a packed row; empty for unpacked examples. */
  public Optional<int[]> positionIds() {
    return packedPositions.length == 0 ? Optional.empty() : Optional.of(packedPositions);
  }

  /** The class id or regression value of a sequence-classification example. */
  public Optional<Float> label() {
    return target.length == 0 ? Optional.empty() : Optional.of(target[0]);
  }

  public Example {
    if (labels.length != inputIds.length) {
      throw new IllegalArgumentException("labels length " + labels.length + " differs from input_ids length " + inputIds.length);
    }
    if (packedPositions.length != 0 && packedPositions.length != inputIds.length) {
      throw new IllegalArgumentException("position_ids length " + packedPositions.length + " differs from input_ids length " + inputIds.length);
    }
    if (target.length > 1) {
      throw new IllegalArgumentException("an example holds at most one label but found " + target.length);
    }
  }
}
