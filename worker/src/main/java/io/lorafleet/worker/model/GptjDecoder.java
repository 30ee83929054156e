package io.lorafleet.worker.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * GPT-J (GPTJForCausalLM), following transformers' modeling_gptj.py: each block reads one
 * LayerNorm, x = ln_1(h), and adds attention and MLP in parallel, h + attn(x) + mlp(x); rotary
 * embeddings act on the first {@code rotary_dim} channels of each head only, rotating every two
 * adjacent channels (rotate_every_two, sin and cos repeated per pair), not Llama's halves; q/k/v and
 * out_proj have no bias; fc_in and fc_out have biases and gelu_new between them; lm_head has a bias
 * and is not tied. Projections are nn.Linear, stored (out, in).
 */
final class GptjDecoder implements Backbone {
  private static String layer(int i) {
    return "transformer.h." + i + ".";
  }

  @Override
  public List<LinearSpec> linears(ModelConfig c) {
    List<LinearSpec> out = new ArrayList<>();
    int h = c.hidden();
    for (int i = 0; i < c.layers(); i++) {
      String p = layer(i);
      String x = p + "ln_1"; // attention and MLP read the same normed input
      out.add(new LinearSpec(p + "attn.q_proj", i, h, h, false, x));
      out.add(new LinearSpec(p + "attn.k_proj", i, h, h, false, x));
      out.add(new LinearSpec(p + "attn.v_proj", i, h, h, false, x));
      out.add(new LinearSpec(p + "attn.out_proj", i, h, h, false));
      out.add(new LinearSpec(p + "mlp.fc_in", i, h, c.intermediate(), true, x));
      out.add(new LinearSpec(p + "mlp.fc_out", i, c.intermediate(), h, true));
    }
    out.add(new LinearSpec("lm_head", -1, h, c.vocabSize(), true));
    return out;
  }

  @Override
  public List<ParamSpec> params(ModelConfig c) {
    List<ParamSpec> out = new ArrayList<>();
    int h = c.hidden();
    out.add(new ParamSpec("transformer.wte.weight", new long[] {c.vocabSize(), h}, false));
    for (LinearSpec l : linears(c)) {
      if (l.name().endsWith("q_proj")) {
        out.add(new ParamSpec(layer(l.layer()) + "ln_1.weight", new long[] {h}, false));
        out.add(new ParamSpec(layer(l.layer()) + "ln_1.bias", new long[] {h}, false));
      }
      if (l.layer() < 0) {
        out.add(new ParamSpec("transformer.ln_f.weight", new long[] {h}, false));
        out.add(new ParamSpec("transformer.ln_f.bias", new long[] {h}, false));
      }
      out.add(new ParamSpec(l.weightKey(), new long[] {l.out(), l.in()}, true));
      l.biasKey().ifPresent(b -> out.add(new ParamSpec(b, new long[] {l.out()}, false)));
    }
    return out;
  }

  /**
   * cos and signed sin tables (B, 1, T, hd) for rotate_every_two on the first rotary_dim channels:
   * channel pair (2j, 2j+1) turns by pos·θ_j, θ_j = 10000^(−2j/rotary_dim) (create_sinusoidal_positions,
   * in fp32), and the channels past rotary_dim pass through (cos 1, sin 0). The even channel's sin
   * carries rotate_every_two's minus sign.
   */
  @Override
  public NDArray[] positionTables(LanguageModel m, NDManager manager, int[][] positions) {
    ModelConfig c = m.config();
    int hd = c.headDim();
    int rd = c.rotaryDim();
    int b = positions.length;
    int t = positions[0].length;
    float[] invFreq = new float[rd / 2];
    for (int j = 0; j < rd / 2; j++) {
      invFreq[j] = (float) (1.0 / Math.pow(10000.0, (double) (2 * j) / rd));
    }
    float[] cos = new float[b * t * hd];
    float[] sin = new float[b * t * hd];
    for (int r = 0; r < b; r++) {
      for (int i = 0; i < t; i++) {
        int p = positions[r][i];
        if (p >= c.maxPositions()) {
          throw new IllegalArgumentException("position " + p + " exceeds GPT-J's n_positions " + c.maxPositions());
        }
        int base = (r * t + i) * hd;
        for (int j = 0; j < hd / 2; j++) {
          if (2 * j < rd) {
            float ang = (float) p * invFreq[j];
            float s = (float) Math.sin(ang);
            cos[base + 2 * j] = cos[base + 2 * j + 1] = (float) Math.cos(ang);
            sin[base + 2 * j] = -s;
            sin[base + 2 * j + 1] = s;
          } else {
            cos[base + 2 * j] = cos[base + 2 * j + 1] = 1f;
          }
        }
      }
    }
    Shape shape = new Shape(b, 1, t, hd);
    return new NDArray[] {manager.create(cos, shape).toType(m.dtype(), false), manager.create(sin, shape).toType(m.dtype(), false)};
  }

  /** x·cos + rotate_every_two(x)·sin, rotate_every_two(x) = (−x1, x0, −x3, x2, …): pairs swapped by a flip of x viewed as (…, hd/2, 2). */
  static NDArray rope(NDArray x, NDArray cos, NDArray signedSin) {
    Shape s = x.getShape();
    NDArray swapped = x.reshape(s.get(0), s.get(1), s.get(2), s.get(3) / 2, 2).flip(4).reshape(s); // (x1, x0, x3, x2, …)
    return x.mul(cos).add(swapped.mul(signedSin));
  }

  /** The token embeddings, embd_pdrop's dropout (GPTJConfig's default 0) in train mode. */
  @Override
  public NDArray embed(LanguageModel m, ForwardContext ctx, NDArray ids, int[][] positions, Optional<int[][]> tokenTypes) {
    return ctx.drop(m.embed(ctx, "transformer.wte.weight", ids), new Dropout.Site("transformer.drop", m.config().dropout("embd_pdrop", 0.0)));
  }

  /** GPTJAttention's attn_dropout: attn_pdrop (default 0). */
  @Override
  public Dropout.Site attentionDropout(ModelConfig c, int i) {
    return new Dropout.Site(layer(i) + "attn.attn_dropout", c.dropout("attn_pdrop", 0.0));
  }

  /** ln_1, the three projections, rotary on q and k. */
  @Override
  public NDArray[] qkv(LanguageModel m, ForwardContext ctx, int i, NDArray h, NDArray[] rope) {
    ModelConfig c = m.config();
    String p = layer(i);
    NDArray x = ln1(m, ctx, i, h);
    NDArray q = rope(Ops.heads(m.linear(ctx, x, p + "attn.q_proj"), c.heads(), c.headDim()), rope[0], rope[1]);
    NDArray k = rope(Ops.heads(m.linear(ctx, x, p + "attn.k_proj"), c.heads(), c.headDim()), rope[0], rope[1]);
    NDArray v = Ops.heads(m.linear(ctx, x, p + "attn.v_proj"), c.heads(), c.headDim());
    return new NDArray[] {q, k, v};
  }

  /** The rest of layer i, in parallel: h + dropout(out_proj(a)) + dropout(fc_out(gelu_new(fc_in(ln_1(h))))), resid_pdrop's dropouts in train mode. */
  @Override
  public NDArray rest(LanguageModel m, ForwardContext ctx, int i, NDArray h, NDArray a) {
    String p = layer(i);
    double resid = m.config().dropout("resid_pdrop", 0.0);
    NDArray x = ln1(m, ctx, i, h);
    NDArray mlp = ctx.drop(m.linear(ctx, Ops.geluTanh(m.linear(ctx, x, p + "mlp.fc_in")), p + "mlp.fc_out"), new Dropout.Site(p + "mlp.dropout", resid));
    NDArray attn = ctx.drop(m.linear(ctx, a, p + "attn.out_proj"), new Dropout.Site(p + "attn.resid_dropout", resid));
    return attn.add(mlp).add(h); // GPT-J's order: attn_output + feed_forward + residual
  }

  private static NDArray ln1(LanguageModel m, ForwardContext ctx, int i, NDArray h) {
    String p = layer(i);
    return Ops.layerNorm(h, m.param(ctx, p + "ln_1.weight"), m.param(ctx, p + "ln_1.bias"), m.config().normEps());
  }

  /** ln_f and lm_head (with its bias), for any tokens of h (B, T', H). */
  @Override
  public NDArray head(LanguageModel m, ForwardContext ctx, NDArray h) {
    h = Ops.layerNorm(h, m.param(ctx, "transformer.ln_f.weight"), m.param(ctx, "transformer.ln_f.bias"), m.config().normEps());
    return m.linear(ctx, h, "lm_head");
  }
}
