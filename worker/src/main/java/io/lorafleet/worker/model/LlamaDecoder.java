package io.lorafleet.worker.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * The Llama family (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM), following
 * transformers' modeling_llama.py: pre-RMSNorm blocks, rotary embeddings, grouped-query attention
 * and a SwiGLU MLP. Qwen2 adds biases on q/k/v; Llama's attention_bias puts them on q/k/v/o.
 */
final class LlamaDecoder implements Backbone {
  private static String layer(int i) {
    return "model.layers." + i + ".";
  }

  private static boolean oBias(ModelConfig c) {
    return c.attentionBias() && !c.modelType().equals("qwen2");
  }

  @Override
  public List<LinearSpec> linears(ModelConfig c) {
    List<LinearSpec> out = new ArrayList<>();
    int h = c.hidden();
    int q = c.heads() * c.headDim();
    int kv = c.kvHeads() * c.headDim();
    for (int i = 0; i < c.layers(); i++) {
      String p = layer(i);
      out.add(new LinearSpec(p + "self_attn.q_proj", i, h, q, c.attentionBias(), p + "input_layernorm"));
      out.add(new LinearSpec(p + "self_attn.k_proj", i, h, kv, c.attentionBias(), p + "input_layernorm"));
      out.add(new LinearSpec(p + "self_attn.v_proj", i, h, kv, c.attentionBias(), p + "input_layernorm"));
      out.add(new LinearSpec(p + "self_attn.o_proj", i, q, h, oBias(c)));
      out.add(new LinearSpec(p + "mlp.gate_proj", i, h, c.intermediate(), c.mlpBias(), p + "post_attention_layernorm"));
      out.add(new LinearSpec(p + "mlp.up_proj", i, h, c.intermediate(), c.mlpBias(), p + "post_attention_layernorm"));
      out.add(new LinearSpec(p + "mlp.down_proj", i, c.intermediate(), h, c.mlpBias()));
    }
    if (!c.tieWordEmbeddings()) {
      out.add(new LinearSpec("lm_head", -1, h, c.vocabSize(), false));
    }
    return out;
  }

  @Override
  public List<ParamSpec> params(ModelConfig c) {
    List<ParamSpec> out = new ArrayList<>();
    int h = c.hidden();
    out.add(new ParamSpec("model.embed_tokens.weight", new long[] {c.vocabSize(), h}, false));
    for (LinearSpec l : linears(c)) {
      if (l.layer() >= 0 && l.name().endsWith("q_proj")) {
        out.add(new ParamSpec(layer(l.layer()) + "input_layernorm.weight", new long[] {h}, false));
      }
      if (l.layer() >= 0 && l.name().endsWith("gate_proj")) {
        out.add(new ParamSpec(layer(l.layer()) + "post_attention_layernorm.weight", new long[] {h}, false));
      }
      if (l.layer() < 0) {
        out.add(new ParamSpec("model.norm.weight", new long[] {h}, false));
      }
      out.add(new ParamSpec(l.weightKey(), new long[] {l.out(), l.in()}, true));
      l.biasKey().ifPresent(b -> out.add(new ParamSpec(b, new long[] {l.out()}, false)));
    }
    if (c.tieWordEmbeddings()) {
      out.add(new ParamSpec("model.norm.weight", new long[] {h}, false));
    }
    return out;
  }

  @Override
  public NDArray[] positionTables(LanguageModel m, NDManager manager, int[][] positions) {
    ModelConfig c = m.config();
    return Ops.ropeTables(manager, positions, c.ropeScaling().invFreq(c.headDim(), c.ropeTheta()), c.ropeScaling().positionScale(), m.dtype());
  }

  @Override
  public NDArray embed(LanguageModel m, ForwardContext ctx, NDArray ids, int[][] positions, Optional<int[][]> tokenTypes) {
    return m.embed(ctx, "model.embed_tokens.weight", ids);
  }

  /** The attention probabilities' dropout: attention_dropout (LlamaConfig's and Qwen2Config's default 0). */
  @Override
  public Dropout.Site attentionDropout(ModelConfig c, int i) {
    return new Dropout.Site(layer(i) + "self_attn.attention_dropout", c.dropout("attention_dropout", 0.0));
  }

  /** input_layernorm, the three projections, rotary applied to q and k. */
  @Override
  public NDArray[] qkv(LanguageModel m, ForwardContext ctx, int i, NDArray h, NDArray[] rope) {
    ModelConfig c = m.config();
    String p = layer(i);
    NDArray x = Ops.rmsNorm(h, m.param(ctx, p + "input_layernorm.weight"), c.normEps());
    NDArray q = Ops.rope(Ops.heads(m.linear(ctx, x, p + "self_attn.q_proj"), c.heads(), c.headDim()), rope[0], rope[1]);
    NDArray k = Ops.rope(Ops.heads(m.linear(ctx, x, p + "self_attn.k_proj"), c.kvHeads(), c.headDim()), rope[0], rope[1]);
    NDArray v = Ops.heads(m.linear(ctx, x, p + "self_attn.v_proj"), c.kvHeads(), c.headDim());
    return new NDArray[] {q, k, v};
  }

  /** h plus o_proj of the attention output, then post_attention_layernorm and the SwiGLU MLP. */
  @Override
  public NDArray rest(LanguageModel m, ForwardContext ctx, int i, NDArray h, NDArray a) {
    ModelConfig c = m.config();
    String p = layer(i);
    h = h.add(m.linear(ctx, a, p + "self_attn.o_proj"));
    NDArray x = Ops.rmsNorm(h, m.param(ctx, p + "post_attention_layernorm.weight"), c.normEps());
    NDArray g = Ops.silu(m.linear(ctx, x, p + "mlp.gate_proj")).mul(m.linear(ctx, x, p + "mlp.up_proj"));
    return h.add(m.linear(ctx, g, p + "mlp.down_proj"));
  }

  /** model.norm, then lm_head or the tied embeddings. */
  @Override
  public NDArray head(LanguageModel m, ForwardContext ctx, NDArray h) {
    ModelConfig c = m.config();
    h = Ops.rmsNorm(h, m.param(ctx, "model.norm.weight"), c.normEps());
    return c.tieWordEmbeddings() ? m.tiedHead(ctx, h, "model.embed_tokens.weight") : m.linear(ctx, h, "lm_head");
  }
}
