package io.lorafleet.worker.model;

import ai.djl.ndarray.NDArray;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * GPT-2 (GPT2LMHeadModel), following transformers' modeling_gpt2.py: learned positions, pre-LayerNorm
 * blocks, one fused Conv1D c_attn producing q|k|v, tanh-GELU, and an lm_head tied to wte. Conv1D
 * weights are stored (in, out), so they are used as they are.
 */
final class Gpt2Decoder implements Backbone {
  private static String layer(int i) {
    return "transformer.h." + i + ".";
  }

  @Override
  public List<LinearSpec> linears(ModelConfig c) {
    List<LinearSpec> out = new ArrayList<>();
    int h = c.hidden();
    for (int i = 0; i < c.layers(); i++) {
      String p = layer(i);
      out.add(new LinearSpec(p + "attn.c_attn", i, h, 3 * h, true));
      out.add(new LinearSpec(p + "attn.c_proj", i, h, h, true));
      out.add(new LinearSpec(p + "mlp.c_fc", i, h, c.intermediate(), true));
      out.add(new LinearSpec(p + "mlp.c_proj", i, c.intermediate(), h, true));
    }
    return out;
  }

  @Override
  public List<ParamSpec> params(ModelConfig c) {
    List<ParamSpec> out = new ArrayList<>();
    int h = c.hidden();
    out.add(new ParamSpec("transformer.wte.weight", new long[] {c.vocabSize(), h}, false));
    out.add(new ParamSpec("transformer.wpe.weight", new long[] {c.maxPositions(), h}, false));
    for (LinearSpec l : linears(c)) {
      String p = layer(l.layer());
      if (l.name().endsWith("c_attn")) {
        out.add(new ParamSpec(p + "ln_1.weight", new long[] {h}, false));
        out.add(new ParamSpec(p + "ln_1.bias", new long[] {h}, false));
      }
      if (l.name().endsWith("c_fc")) {
        out.add(new ParamSpec(p + "ln_2.weight", new long[] {h}, false));
        out.add(new ParamSpec(p + "ln_2.bias", new long[] {h}, false));
      }
      out.add(new ParamSpec(l.weightKey(), new long[] {l.in(), l.out()}, false));
      out.add(new ParamSpec(l.name() + ".bias", new long[] {l.out()}, false));
    }
    out.add(new ParamSpec("transformer.ln_f.weight", new long[] {h}, false));
    out.add(new ParamSpec("transformer.ln_f.bias", new long[] {h}, false));
    return out;
  }

  /** Token plus learned position embeddings (B, T, H), embd_pdrop's dropout in train mode. */
  @Override
  public NDArray embed(LanguageModel m, ForwardContext ctx, NDArray ids, int[][] positions, Optional<int[][]> tokenTypes) {
    ModelConfig c = m.config();
    for (int[] row : positions) {
      for (int p : row) {
        if (p >= c.maxPositions()) {
          throw new IllegalArgumentException("position " + p + " exceeds GPT-2's n_positions " + c.maxPositions());
        }
      }
    }
    NDArray pos = ctx.manager().create(positions).toType(ai.djl.ndarray.types.DataType.INT64, false);
    NDArray e = m.embed(ctx, "transformer.wte.weight", ids).add(m.embed(ctx, "transformer.wpe.weight", pos));
    return ctx.drop(e, new Dropout.Site("transformer.drop", c.dropout("embd_pdrop", 0.1)));
  }

  /** GPT2Attention's attn_dropout: attn_pdrop (GPT2Config's default 0.1). */
  @Override
  public Dropout.Site attentionDropout(ModelConfig c, int i) {
    return new Dropout.Site(layer(i) + "attn.attn_dropout", c.dropout("attn_pdrop", 0.1));
  }

  /** ln_1, then the fused c_attn split in three. */
  @Override
  public NDArray[] qkv(LanguageModel m, ForwardContext ctx, int i, NDArray h, NDArray[] tables) {
    ModelConfig c = m.config();
    String p = layer(i);
    NDArray x = Ops.layerNorm(h, m.param(ctx, p + "ln_1.weight"), m.param(ctx, p + "ln_1.bias"), c.normEps());
    var parts = m.linear(ctx, x, p + "attn.c_attn").split(3, 2); // (B, T, 3H) in three
    return new NDArray[] {Ops.heads(parts.get(0), c.heads(), c.headDim()), Ops.heads(parts.get(1), c.heads(), c.headDim()),
        Ops.heads(parts.get(2), c.heads(), c.headDim())};
  }

  /** The rest of layer i: h + dropout(c_proj(a)), then ln_2 and the GELU MLP, its output dropped too (resid_pdrop, in train mode). */
  @Override
  public NDArray rest(LanguageModel m, ForwardContext ctx, int i, NDArray h, NDArray a) {
    ModelConfig c = m.config();
    String p = layer(i);
    double resid = c.dropout("resid_pdrop", 0.1);
    h = h.add(ctx.drop(m.linear(ctx, a, p + "attn.c_proj"), new Dropout.Site(p + "attn.resid_dropout", resid)));
    NDArray x = Ops.layerNorm(h, m.param(ctx, p + "ln_2.weight"), m.param(ctx, p + "ln_2.bias"), c.normEps());
    NDArray mlp = m.linear(ctx, Ops.geluTanh(m.linear(ctx, x, p + "mlp.c_fc")), p + "mlp.c_proj");
    return h.add(ctx.drop(mlp, new Dropout.Site(p + "mlp.dropout", resid)));
  }

  /** ln_f and the tied output layer, for any tokens of h (B, T', H). */
  @Override
  public NDArray head(LanguageModel m, ForwardContext ctx, NDArray h) {
    ModelConfig c = m.config();
    h = Ops.layerNorm(h, m.param(ctx, "transformer.ln_f.weight"), m.param(ctx, "transformer.ln_f.bias"), c.normEps());
    return m.tiedHead(ctx, h, "transformer.wte.weight");
  }
}
