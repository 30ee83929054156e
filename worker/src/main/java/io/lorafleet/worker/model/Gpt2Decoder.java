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
final class Gpt2Decoder implements Decoder {
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

  @Override
  public NDArray forward(CausalLM m, ForwardContext ctx, NDArray ids, int[][] positions, Optional<int[][]> segments, Optional<KvCache> cache) {
    ModelConfig c = m.config();
    int b = positions.length;
    int t = positions[0].length;
    int past = cache.map(KvCache::length).orElse(0);
    for (int[] row : positions) {
      for (int p : row) {
        if (p >= c.maxPositions()) {
          throw new IllegalArgumentException("position " + p + " exceeds GPT-2's n_positions " + c.maxPositions());
        }
      }
    }
    NDArray pos = ctx.manager().create(positions).toType(ai.djl.ndarray.types.DataType.INT64, false);
    NDArray h = m.embed(ctx, "transformer.wte.weight", ids).add(m.embed(ctx, "transformer.wpe.weight", pos)); // (B, T, H)
    NDArray mask = Ops.mask(ctx.manager(), b, t, past, segments, 0, m.dtype());
    int hd = c.headDim();
    for (int i = 0; i < c.layers(); i++) {
      String p = layer(i);
      NDArray x = Ops.layerNorm(h, m.param(ctx, p + "ln_1.weight"), m.param(ctx, p + "ln_1.bias"), c.normEps());
      NDArray qkv = m.linear(ctx, x, p + "attn.c_attn"); // (B, T, 3H)
      var parts = qkv.split(3, 2);
      NDArray q = Ops.heads(parts.get(0), c.heads(), hd);
      NDArray k = Ops.heads(parts.get(1), c.heads(), hd);
      NDArray v = Ops.heads(parts.get(2), c.heads(), hd);
      if (cache.isPresent()) {
        NDArray[] kv = cache.get().append(i, k, v);
        k = kv[0];
        v = kv[1];
      }
      h = h.add(m.linear(ctx, Ops.attention(q, k, v, mask), p + "attn.c_proj"));
      x = Ops.layerNorm(h, m.param(ctx, p + "ln_2.weight"), m.param(ctx, p + "ln_2.bias"), c.normEps());
      h = h.add(m.linear(ctx, Ops.geluTanh(m.linear(ctx, x, p + "mlp.c_fc")), p + "mlp.c_proj"));
    }
    cache.ifPresent(kc -> kc.advance(t));
    h = Ops.layerNorm(h, m.param(ctx, "transformer.ln_f.weight"), m.param(ctx, "transformer.ln_f.bias"), c.normEps());
    return m.tiedHead(ctx, h, "transformer.wte.weight");
  }
}
