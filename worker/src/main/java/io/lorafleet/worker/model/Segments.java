package io.lorafleet.worker.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;

/**
 * One batch's forward pass (Llama family, GPT-2 or GPT-J) in pieces: the embedding, each layer's attention
 * inputs, attention for any block of query rows, the rest of each layer, and the output layer for
 * any block of tokens. The train package's RecomputeStep recomputes these pieces
 * in its backward pass so that no step holds all layers' activations, a T × T attention matrix or
 * the (B, T, V) logits at once; composed in order they are exactly {@link LanguageModel#forward}.
 */
public final class Segments {
  private final LanguageModel m;
  private final ForwardContext ctx;
  private final Batch batch;
  private final NDArray[] tables;
  private final int rep;
  private final Backbone backbone;

  Segments(LanguageModel m, ForwardContext ctx, Batch batch) {
    this.m = m;
    this.ctx = ctx;
    this.batch = batch;
    this.backbone = m.backbone();
    this.tables = backbone.positionTables(m, ctx.manager(), batch.positionIds());
    this.rep = m.config().heads() / m.config().kvHeads();
  }

  public int layers() {
    return m.config().layers();
  }

  public int seqLen() {
    return batch.seqLen();
  }

  /** The input embeddings (B, T, H). */
  public NDArray embed() {
    NDArray ids = ctx.manager().create(batch.inputIds()).toType(ai.djl.ndarray.types.DataType.INT64, false);
    return backbone.embed(m, ctx, ids, batch.positionIds(), batch.tokenTypes());
  }

  /** Layer i's q (B, nh, T, hd), k and v (B, nkv, T, hd) from its input h. */
  public NDArray[] qkv(int layer, NDArray h) {
    return backbone.qkv(m, ctx, layer, h, tables);
  }

  /**
   * Layer {@code layer}'s attention output rows [r0, r1) (B, r1 − r0, nh·hd): those queries against every key, under the
   * causal, window and segment masks, with that block's rows of the layer's attention dropout in train mode. Every array it makes (the block's mask, scores and
   * probabilities, the repeated keys and values) lives in {@code scope}, so closing it frees the
   * block: blocks never add up to a T × T matrix.
   */
  public NDArray attend(NDManager scope, int layer, NDArray q, NDArray k, NDArray v, int r0, int r1) {
    NDArray mask = Ops.maskRows(scope, batch.size(), batch.seqLen(), r0, r1, batch.segmentIds(), m.config().slidingWindow(), m.dtype());
    NDArray qb = q.get(new NDIndex(":, :, {}:{}", r0, r1)); // a view; the ops below take their manager from it
    qb.attach(scope);
    Dropout.Site probs = backbone.attentionDropout(m.config(), layer); // the block's rows of the whole layer's mask
    return Ops.attention(qb, scoped(Ops.repeatKv(k, rep), k, scope), scoped(Ops.repeatKv(v, rep), v, scope), mask, a -> ctx.drop(a, probs, r0));
  }

  private static NDArray scoped(NDArray made, NDArray from, NDManager scope) {
    if (made != from) {
      made.attach(scope);
    }
    return made;
  }

  /** The rest of layer i: h + o_proj(a), then the MLP block. */
  public NDArray rest(int layer, NDArray h, NDArray a) {
    return backbone.rest(m, ctx, layer, h, a);
  }

  /** Logits (B, T', V) of hidden states h (B, T', H). */
  public NDArray head(NDArray h) {
    return backbone.head(m, ctx, h);
  }
}
