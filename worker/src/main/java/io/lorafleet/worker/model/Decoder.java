package io.lorafleet.worker.model;

import ai.djl.ndarray.NDArray;
import java.util.List;
import java.util.Optional;

/** An architecture's tensor inventory and forward pass. Implementations hold no state of their own. */
interface Decoder {
  /** The decoder of {@code c}'s architecture. */
  static Decoder of(ModelConfig c) {
    return switch (c.arch()) {
      case LLAMA -> new LlamaDecoder();
      case GPT2 -> new Gpt2Decoder();
      case GPTJ -> new GptjDecoder();
    };
  }

  /** Every tensor the checkpoint must hold, in HF names and layout. */
  List<ParamSpec> params(ModelConfig c);

  /** The projections LoRA may target, in forward order. */
  List<LinearSpec> linears(ModelConfig c);

  /**
   * Logits (B, T, V) for ids (B, T) at the given absolute positions. With a cache, keys and values of
   * these positions are appended to it and attention covers the cached prefix.
   */
  NDArray forward(CausalLM m, ForwardContext ctx, NDArray ids, int[][] positions, Optional<int[][]> segments, Optional<KvCache> cache);

  /** A layer's attention inputs: q (B, nh, T, hd), k and v (B, nkv, T, hd) from the layer's input h (B, T, H). */
  interface Qkv {
    NDArray[] of(int layer, NDArray h);
  }

  /** The rest of a layer: its output from its input h and the attention output a (B, T, nh·hd). */
  interface Rest {
    NDArray of(int layer, NDArray h, NDArray a);
  }

  /**
   * The loop every decoder runs over its layers from the embeddings h (B, T, H): q, k, v; k and v
   * appended to the cache (attention then covers the cached prefix); attention under {@code mask}
   * with each kv head repeated {@code rep} times; the rest of the layer. The cache advances by T.
   */
  static NDArray layers(int layers, NDArray h, Optional<KvCache> cache, NDArray mask, int rep, Qkv qkvOf, Rest restOf) {
    long t = h.getShape().get(1);
    for (int i = 0; i < layers; i++) {
      NDArray[] qkv = qkvOf.of(i, h);
      NDArray k = qkv[1];
      NDArray v = qkv[2];
      if (cache.isPresent()) {
        NDArray[] kv = cache.get().append(i, k, v);
        k = kv[0];
        v = kv[1];
      }
      h = restOf.of(i, h, Ops.attention(qkv[0], Ops.repeatKv(k, rep), Ops.repeatKv(v, rep), mask));
    }
    cache.ifPresent(kc -> kc.advance((int) t));
    return h;
  }
}
