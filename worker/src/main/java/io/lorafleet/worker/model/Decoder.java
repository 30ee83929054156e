package io.lorafleet.worker.model;

import ai.djl.ndarray.NDArray;
import java.util.List;
import java.util.Optional;

/** An architecture's tensor inventory and forward pass. Implementations hold no state of their own. */
interface Decoder {
  /** The decoder of {@code c}'s architecture. */
  static Decoder of(ModelConfig c) {
    return c.arch() == Architecture.LLAMA ? new LlamaDecoder() : new Gpt2Decoder();
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
}
