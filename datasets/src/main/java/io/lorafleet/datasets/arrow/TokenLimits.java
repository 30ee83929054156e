package io.lorafleet.datasets.arrow;

import java.io.Serializable;

/**
 * What a model accepts: token ids in [0, vocabSize) and positions in [0, maxPositions). Rows are
 * checked against it as they are read, so an id the embedding table lacks is reported with its
 * split, shard and row instead of surfacing as a native index error (or, on a GPU, as a device
 * assert that poisons the cached model).
 */
public record TokenLimits(int vocabSize, int maxPositions) implements Serializable {
  /** No check (tools that only count or copy rows). */
  public static final TokenLimits NONE = new TokenLimits(Integer.MAX_VALUE, Integer.MAX_VALUE);

  public TokenLimits {
    if (vocabSize <= 0 || maxPositions <= 0) {
      throw new IllegalArgumentException("vocab size and max positions must be > 0 but found " + vocabSize + " and " + maxPositions);
    }
  }

  /** Throws IllegalArgumentException naming {@code where} (split, shard, row) and the offending value. */
  void check(Example e, String where) {
    int[] ids = e.inputIds();
    for (int k = 0; k < ids.length; k++) {
      if (ids[k] < 0 || ids[k] >= vocabSize) {
        throw new IllegalArgumentException(where + ": input_ids[" + k + "] is " + ids[k] + " but the model's vocabulary holds ids 0.." + (vocabSize - 1)
            + "; the data was prepared for another model, or is corrupt");
      }
      int label = e.labels()[k];
      if (label != -100 && (label < 0 || label >= vocabSize)) {
        throw new IllegalArgumentException(where + ": labels[" + k + "] is " + label + " but must be -100 or an id in 0.." + (vocabSize - 1));
      }
    }
    if (e.positionIds().isPresent()) {
      int[] pos = e.positionIds().get();
      for (int k = 0; k < pos.length; k++) {
        if (pos[k] < 0 || pos[k] >= maxPositions) {
          throw new IllegalArgumentException(where + ": position_ids[" + k + "] is " + pos[k] + " but the model's context holds positions 0.."
              + (maxPositions - 1) + " (max_position_embeddings)");
        }
      }
    } else if (ids.length > maxPositions) {
      throw new IllegalArgumentException(where + ": the row holds " + ids.length + " tokens but the model's context is " + maxPositions
          + " (max_position_embeddings); prepare with --max-seq-len " + maxPositions + " or less");
    }
  }
}
