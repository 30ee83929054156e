package io.lorafleet.worker.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import java.util.List;
import java.util.Optional;

/** An architecture's tensor inventory and the pieces of its forward pass. Implementations hold no state of their own. */
interface Backbone {
  /** The backbone of {@code c}'s architecture: a decoder stack, or an encoder with its classifier. */
  static Backbone of(ModelConfig c) {
    return switch (c.arch()) {
      case LLAMA -> new LlamaDecoder();
      case GPT2 -> new Gpt2Decoder();
      case GPTJ -> new GptjDecoder();
      case ROBERTA -> new RobertaEncoder();
      case BERT -> new BertEncoder();
      case DEBERTA_V2 -> new DebertaV2Encoder();
      case DISTILBERT -> new DistilBertEncoder();
    };
  }

  /** Every tensor the checkpoint must hold, in HF names and layout. */
  List<ParamSpec> params(ModelConfig c);

  /**
   * An encoder's classification head, which {@link #params} includes: tensors trained whole and
   * saved as PEFT's modules_to_save, in HF layout. When a checkpoint lacks them (a base model) they
   * are initialized as transformers does ({@link HeadInit}). Decoders have none.
   */
  default List<ParamSpec> headParams(ModelConfig c) {
    return List.of();
  }

  /**
   * Tensors made as transformers' _init_weights makes them (see {@link HeadInit}) when a checkpoint
   * lacks them: the head, and for BERT the pooler that sentence-embedding checkpoints leave out.
   */
  default List<String> initializedWhenMissing(ModelConfig c) {
    return headParams(c).stream().map(ParamSpec::name).toList();
  }

  /** The transformers class of this architecture's sequence classifier, which a merged encoder's config.json names. */
  default String sequenceClassifierClass(ModelConfig c) {
    throw new IllegalStateException("model_type " + c.modelType() + " is a causal LM, not a sequence classifier");
  }

  /** The projections LoRA may target, in forward order. */
  List<LinearSpec> linears(ModelConfig c);

  /** Tables every layer reads for these positions (RoPE's cos and signed sin), made in {@code manager}; none for learned or relative positions. */
  default NDArray[] positionTables(LanguageModel m, NDManager manager, int[][] positions) {
    return new NDArray[0];
  }

  /** The input embeddings (B, T, H) of ids (B, T) at the given positions, with their token types (B, T) where the model has them (encoders; none: all 0). */
  NDArray embed(LanguageModel m, ForwardContext ctx, NDArray ids, int[][] positions, Optional<int[][]> tokenTypes);

  /** Layer i's attention inputs from its input h (B, T, H): q (B, nh, T, hd), k and v (B, nkv, T, hd). */
  NDArray[] qkv(LanguageModel m, ForwardContext ctx, int layer, NDArray h, NDArray[] tables);

  /** Layer i's dropout on the attention probabilities in train mode (transformers' attn_dropout); {@link Dropout.Site#NONE} where the architecture has none. */
  default Dropout.Site attentionDropout(ModelConfig c, int layer) {
    return Dropout.Site.NONE;
  }

  /** The rest of layer i: its output from its input h and the attention output a (B, T, nh·hd). */
  NDArray rest(LanguageModel m, ForwardContext ctx, int layer, NDArray h, NDArray a);

  /** The final norm and output layer, for any tokens of the last hidden state h (B, T', H) → (B, T', V). */
  NDArray head(LanguageModel m, ForwardContext ctx, NDArray h);

  /** Logits for a batch's ids (B, T): (B, T, V) for a causal LM, class logits (B, num_labels) for an encoder, which reads the batch's token types too. */
  default NDArray forward(LanguageModel m, ForwardContext ctx, NDArray ids, Batch batch) {
    return forward(m, ctx, ids, batch.positionIds(), batch.segmentIds(), Optional.empty());
  }

  /** The last layer's output (B, T, H) for a batch's ids, before the head: what sentence-embedding models pool. */
  default NDArray lastHiddenState(LanguageModel m, ForwardContext ctx, NDArray ids, Batch batch) {
    return hidden(m, ctx, ids, batch.positionIds(), batch.segmentIds(), Optional.empty());
  }

  /** Logits (B, T, V) for ids (B, T) at the given absolute positions: the head over {@link #hidden}. */
  default NDArray forward(LanguageModel m, ForwardContext ctx, NDArray ids, int[][] positions, Optional<int[][]> segments, Optional<KvCache> cache) {
    return head(m, ctx, hidden(m, ctx, ids, positions, segments, cache));
  }

  /**
   * The last layer's output (B, T, H) for ids (B, T) at the given absolute positions, from the
   * pieces above (which {@link Segments} recomputes one at a time): for each layer q, k, v; k and v
   * appended to the cache, when there is one, so that attention covers the cached prefix; attention
   * under the causal, window and segment masks, each kv head repeated heads/kv_heads times, its
   * probabilities dropped in train mode; the rest of the layer.
   */
  default NDArray hidden(LanguageModel m, ForwardContext ctx, NDArray ids, int[][] positions, Optional<int[][]> segments, Optional<KvCache> cache) {
    ModelConfig c = m.config();
    int b = positions.length;
    int t = positions[0].length;
    int past = cache.map(KvCache::length).orElse(0);
    int rep = c.heads() / c.kvHeads();
    NDArray[] tables = positionTables(m, ctx.manager(), positions);
    NDArray mask = Ops.mask(ctx.manager(), b, t, past, segments, c.slidingWindow(), m.dtype());
    NDArray h = embed(m, ctx, ids, positions, Optional.empty()); // (B, T, H)
    for (int i = 0; i < c.layers(); i++) {
      NDArray[] qkv = qkv(m, ctx, i, h, tables);
      NDArray k = qkv[1];
      NDArray v = qkv[2];
      if (cache.isPresent()) {
        NDArray[] kv = cache.get().append(i, k, v, ctx.manager());
        k = kv[0];
        v = kv[1];
      }
      Dropout.Site probs = attentionDropout(c, i);
      h = rest(m, ctx, i, h, Ops.attention(qkv[0], Ops.repeatKv(k, rep), Ops.repeatKv(v, rep), mask, a -> ctx.drop(a, probs)));
    }
    cache.ifPresent(kc -> kc.advance(t));
    return h;
  }
}
