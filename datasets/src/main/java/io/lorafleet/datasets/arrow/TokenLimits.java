package io.lorafleet.datasets.arrow;

import io.lorafleet.worker.model.Batch;
import java.io.Serializable;

/**
 * What a model accepts: token ids in [0, vocabSize) and positions in [0, maxPositions). Rows are
 * checked against it as they are read, so an id the embedding table lacks is reported with its
 * split, shard and row instead of surfacing as a native index error (or, on a GPU, as a device
 * assert that poisons the cached model).
 */
public record TokenLimits(int vocabSize, int maxPositions, int numLabels) implements Serializable {
  /** No check (tools that only count or copy rows). */
  public static final TokenLimits NONE = new TokenLimits(Integer.MAX_VALUE, Integer.MAX_VALUE, -1);

  /** A causal LM's limits: rows carry token labels. */
  public TokenLimits(int vocabSize, int maxPositions) {
    this(vocabSize, maxPositions, 0);
  }

  /** What {@code model} accepts: its vocabulary and context, and a label per row when it is a sequence classifier. */
  public static TokenLimits of(io.lorafleet.worker.model.ModelConfig model) {
    return new TokenLimits(model.vocabSize(), model.contextLength(), model.arch().encoder() ? model.numLabels() : 0);
  }

  public TokenLimits {
    if (vocabSize <= 0 || maxPositions <= 0) {
      throw new IllegalArgumentException("vocab size and max positions must be > 0 but found " + vocabSize + " and " + maxPositions);
    }
  }

  /**
   * A classifier (numLabels &gt; 0) needs rows with a label: a class id in [0, numLabels), or any
   * finite value when numLabels is 1 (regression); a causal LM (0) needs rows without one. -1 checks nothing.
   */
  private void checkLabel(Example e, String where) {
    if (numLabels < 0) {
      return;
    }
    if (numLabels == 0 && e.label().isPresent()) {
      throw new IllegalArgumentException(where + ": the row holds a sequence label (prepared with --format classification) but the model is a "
          + "causal LM, which trains on token labels");
    }
    if (numLabels > 0 && e.label().isEmpty()) {
      throw new IllegalArgumentException(where + ": the row holds token labels but the model is a sequence classifier with " + numLabels
          + " labels; prepare the data with --format classification");
    }
    if (numLabels > 0) {
      float y = e.label().get();
      boolean ok = numLabels == 1 ? Float.isFinite(y) : y == Math.rint(y) && y >= 0 && y < numLabels;
      if (!ok) {
        throw new IllegalArgumentException(where + ": label is " + y + " but the model's head expects "
            + (numLabels == 1 ? "a finite value (regression)" : "a class id in 0.." + (numLabels - 1) + " (num_labels " + numLabels + ")"));
      }
    }
  }

  /** Throws IllegalArgumentException naming {@code where} (split, shard, row) and the offending value. */
  void check(Example e, String where) {
    checkLabel(e, where);
    int[] ids = e.inputIds();
    for (int k = 0; k < ids.length; k++) {
      if (ids[k] < 0 || ids[k] >= vocabSize) {
        throw new IllegalArgumentException(where + ": input_ids[" + k + "] is " + ids[k] + " but the model's vocabulary holds ids 0.." + (vocabSize - 1)
            + "; the data was prepared for another model, or is corrupt");
      }
      int label = e.labels()[k];
      if (label != Batch.IGNORE && (label < 0 || label >= vocabSize)) {
        throw new IllegalArgumentException(where + ": labels[" + k + "] is " + label + " but must be " + Batch.IGNORE + " or an id in 0.." + (vocabSize - 1));
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
