package io.lorafleet.datasets.arrow;

import java.util.Optional;

/**
 * One tokenized training example: input ids, HF-convention labels (-100 where no loss falls) and,
 * for packed rows, position ids that restart per example.
 */
public record Example(int[] inputIds, int[] labels, int[] packedPositions) implements java.io.Serializable {
  /** An unpacked example (no position ids column). */
  public Example(int[] inputIds, int[] labels) {
    this(inputIds, labels, new int[0]);
  }

  /** Position ids of a packed row; empty for unpacked examples. */
  public Optional<int[]> positionIds() {
    return packedPositions.length == 0 ? Optional.empty() : Optional.of(packedPositions);
  }

  public Example {
    if (labels.length != inputIds.length) {
      throw new IllegalArgumentException("labels length " + labels.length + " differs from input_ids length " + inputIds.length);
    }
    if (packedPositions.length != 0 && packedPositions.length != inputIds.length) {
      throw new IllegalArgumentException("position_ids length " + packedPositions.length + " differs from input_ids length " + inputIds.length);
    }
  }
}
