package io.lorafleet.worker.model;

import ai.djl.ndarray.NDArray;
import java.util.Optional;

/**
 * An encoder with a sequence-classification head: its last hidden state under bidirectional
 * attention ({@link #encode}), and its head on that. It classifies; it does not generate, so a KV
 * cache is refused by name.
 */
abstract class EncoderBackbone implements Backbone {
  /** The last hidden state (B, T, H) of ids (B, T); padding lies in a segment of its own; token types none: all 0. */
  abstract NDArray encode(LanguageModel m, ForwardContext ctx, NDArray ids, int[][] positions, Optional<int[][]> segments, Optional<int[][]> tokenTypes);

  @Override
  public final NDArray lastHiddenState(LanguageModel m, ForwardContext ctx, NDArray ids, Batch batch) {
    return encode(m, ctx, ids, batch.positionIds(), batch.segmentIds(), batch.tokenTypes());
  }

  /** Class logits (B, num_labels) of a batch, its token types read. */
  @Override
  public final NDArray forward(LanguageModel m, ForwardContext ctx, NDArray ids, Batch batch) {
    return head(m, ctx, lastHiddenState(m, ctx, ids, batch));
  }

  /** Class logits (B, num_labels), token types all 0. */
  @Override
  public final NDArray forward(LanguageModel m, ForwardContext ctx, NDArray ids, int[][] positions, Optional<int[][]> segments, Optional<KvCache> cache) {
    EncoderBlocks.refuseCache(m.config(), cache);
    return head(m, ctx, encode(m, ctx, ids, positions, segments, Optional.empty()));
  }
}
