package io.lorafleet.datasets.arrow;

import io.lorafleet.worker.model.Batch;
import java.util.Optional;

/**
 * One tokenized training example: input ids, HF-convention labels (-100 where no loss falls) and,
 * for packed rows, position ids that restart per example. A sequence-classification example holds
 * its class id (or, for regression, its value) in {@code target} instead, token labels of -100, and
 * its token type ids (empty: all 0).
 */
public record Example(int[] inputIds, int[] labels, int[] packedPositions, float[] target, int[] tokenTypes) implements java.io.Serializable {
  /** An unpacked example (no position ids column). */
  public Example(int[] inputIds, int[] labels) {
    this(inputIds, labels, new int[0], new float[0], new int[0]);
  }

  /** A causal-LM example, packed when positions are given. */
  public Example(int[] inputIds, int[] labels, int[] packedPositions) {
    this(inputIds, labels, packedPositions, new float[0], new int[0]);
  }

  /** A sequence-classification example: ids with the tokenizer's special tokens, and one label. */
  public static Example classified(int[] inputIds, float label) {
    return classified(inputIds, new int[0], label);
  }

  /** As {@link #classified(int[], float)} with the tokens' type ids (BERT's 0 and 1 for a pair; empty: all 0). */
  public static Example classified(int[] inputIds, int[] tokenTypes, float label) {
    int[] none = new int[inputIds.length];
    java.util.Arrays.fill(none, Batch.IGNORE);
    boolean any = java.util.Arrays.stream(tokenTypes).anyMatch(x -> x != 0);
    return new Example(inputIds, none, new int[0], new float[] {label}, any ? tokenTypes : new int[0]);
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
    if (tokenTypes.length != 0 && tokenTypes.length != inputIds.length) {
      throw new IllegalArgumentException("token_type_ids length " + tokenTypes.length + " differs from input_ids length " + inputIds.length);
    }
    if (target.length > 1) {
      throw new IllegalArgumentException("an example holds at most one label but found " + target.length);
    }
  }
}
