package io.lorafleet.worker.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.worker.TinyModels;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.safetensors.SafetensorsReader;
import io.lorafleet.worker.safetensors.Tensor;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * GPT-J against an independent float64 implementation written from transformers'
 * models/gptj/modeling_gptj.py (v4.4x to v5):
 *
 * <ul>
 *   <li>GPTJBlock.forward: residual = h; x = ln_1(h); h = attn(x) + mlp(x) + residual;
 *   <li>GPTJAttention: q, k, v = Linear(bias=False); q and k split into the first rotary_dim
 *       channels (rotated) and the rest (passed through); attn_weights = q·kᵀ / sqrt(head_dim) under
 *       the causal mask; out_proj without bias;
 *   <li>create_sinusoidal_positions: inv_freq = 1 / 10000^(arange(0, rotary_dim, 2) / rotary_dim),
 *       sinusoid = position × inv_freq in fp32, then sin and cos, each repeat_interleave'd by 2;
 *       rotate_every_two(x) = stack((−x[..., 1::2], x[..., ::2]), −1).flatten(−2);
 *       apply_rotary_pos_emb: x·cos + rotate_every_two(x)·sin;
 *   <li>GPTJMLP: fc_out(gelu_new(fc_in(x))), both with bias; gelu_new(x) = 0.5x(1 + tanh(√(2/π)(x + 0.044715x³)));
 *   <li>GPTJForCausalLM: lm_head = Linear(n_embd, vocab_size) with bias, after ln_f.
 * </ul>
 *
 * The checkpoint is written in the HF layout with the keys GPTJForCausalLM's state_dict has (plus
 * the attn.bias / attn.masked_bias buffers older checkpoints carry, which are ignored).
 */
class GptjReferenceTest {
  @TempDir Path tmp;

  /** GPTJForCausalLM's state_dict keys for n_layer 2, as listed from its modules. */
  static List<String> expectedKeys() {
    List<String> keys = new ArrayList<>(List.of("transformer.wte.weight", "transformer.ln_f.weight", "transformer.ln_f.bias", "lm_head.weight",
        "lm_head.bias"));
    for (int i = 0; i < 2; i++) {
      String p = "transformer.h." + i + ".";
      keys.addAll(List.of(p + "ln_1.weight", p + "ln_1.bias", p + "attn.q_proj.weight", p + "attn.k_proj.weight", p + "attn.v_proj.weight",
          p + "attn.out_proj.weight", p + "mlp.fc_in.weight", p + "mlp.fc_in.bias", p + "mlp.fc_out.weight", p + "mlp.fc_out.bias"));
    }
    return keys;
  }

  @Test
  void logitsEqualAFloat64ImplementationOfModelingGptj() throws Exception {
    TinyModelSpec spec = TinyModels.GPTJ;
    ObjectNode cfgJson = spec.configJson(1, 2);
    ModelConfig c = ModelConfig.fromJson(cfgJson, "gptj");
    assertEquals(4, c.rotaryDim(), "rotary on part of each 8-channel head, as GPT-J-6B's 64 of 256");
    Map<String, Tensor> t = new LinkedHashMap<>(TinyModels.tensors(spec, 21));
    assertEquals(new TreeSet<>(expectedKeys()), new TreeSet<>(t.keySet()), "the checkpoint's keys are GPTJForCausalLM's");
    float[] causal = new float[64 * 64];
    t.put("transformer.h.0.attn.bias", Tensor.ofFloats(causal, new long[] {1, 1, 64, 64})); // buffers of older checkpoints
    t.put("transformer.h.0.attn.masked_bias", Tensor.ofFloats(new float[] {-1e9f}, new long[] {}));
    Path dir = tmp.resolve("gptj");
    ModelDirectory.write(dir, cfgJson, t);
    int[] ids = {1, 7, 30, 4, 4, 19, 2, 11, 36, 5};
    double[][] want = reference(t, c, ids, RowMasks.EVAL);
    try (LanguageModel m = LanguageModel.load(dir, Device.cpu(), DataType.FLOAT64); NDManager s = m.manager().newSubManager()) {
      double[] got = m.forward(ForwardContext.inference(s, LinearDelta.NONE), Batch.of(new int[][] {ids}, new int[1][ids.length]))
          .toType(DataType.FLOAT64, false).toDoubleArray();
      int v = c.vocabSize();
      double spread = 0;
      for (int i = 0; i < ids.length; i++) {
        for (int j = 0; j < v; j++) {
          assertEquals(want[i][j], got[i * v + j], 1e-9 * (1 + Math.abs(want[i][j])), "position " + i + " logit " + j);
          spread = Math.max(spread, Math.abs(want[i][j]));
        }
      }
      assertTrue(spread > 1, "logits must be non-trivial: " + spread);
    }
  }

  /** Rotary on all channels of a head must differ from rotary on the first rotary_dim: the test above would see a Llama-style rotation. */
  @Test
  void theRotationIsEveryTwoOnTheFirstRotaryDimChannelsOnly() {
    ModelConfig c = ModelConfig.fromJson(TinyModels.GPTJ.configJson(1, 2), "gptj");
    try (LanguageModel m = TinyModels.model(TinyModels.GPTJ, 3, DataType.FLOAT64); NDManager s = m.manager().newSubManager()) {
      var tables = new GptjDecoder().positionTables(m, s, new int[][] {{0, 5}});
      double[] cos = tables[0].toType(DataType.FLOAT64, false).toDoubleArray(); // (1, 1, 2, 8)
      double[] sin = tables[1].toType(DataType.FLOAT64, false).toDoubleArray();
      int hd = c.headDim();
      float ang0 = 5f * 1f; // pair 0: inv_freq 1
      float ang1 = 5f * (float) (1.0 / Math.pow(10000.0, 2.0 / 4)); // pair 1: 10000^(-2/4)
      assertArrayEquals(new double[] {(float) Math.cos(ang0), (float) Math.cos(ang0), (float) Math.cos(ang1), (float) Math.cos(ang1), 1, 1, 1, 1},
          java.util.Arrays.copyOfRange(cos, hd, 2 * hd), 0);
      assertArrayEquals(new double[] {-(float) Math.sin(ang0), (float) Math.sin(ang0), -(float) Math.sin(ang1), (float) Math.sin(ang1), 0, 0, 0, 0},
          java.util.Arrays.copyOfRange(sin, hd, 2 * hd), 0);
    }
  }

  @Test
  void peftKeysAndAnUnsupportedTieAreNamed() throws Exception {
    try (LanguageModel m = TinyModels.model(TinyModels.GPTJ, 3, DataType.FLOAT32)) {
      LoraModel lora = LoraModel.create(m, LoraConfig.of(2, 4, List.of("q_proj", "v_proj", "fc_in")));
      AdapterFormat.write(tmp, lora, lora.initialParams(1), Map.of());
      var st = SafetensorsReader.open(tmp.resolve(AdapterFormat.WEIGHTS));
      assertArrayEquals(new long[] {2, 16}, st.tensors().get("base_model.model.transformer.h.0.attn.q_proj.lora_A.weight").shape());
      assertArrayEquals(new long[] {32, 2}, st.tensors().get("base_model.model.transformer.h.1.mlp.fc_in.lora_B.weight").shape());
      assertEquals(12, st.tensors().size());
      LoraModel all = LoraModel.create(m, LoraConfig.of(2, 4, List.of("all-linear")));
      assertTrue(all.targets().stream().noneMatch(x -> x.module().name().equals("lm_head")), "all-linear leaves the output layer out, as PEFT");
    }
    ObjectNode tied = TinyModels.GPTJ.configJson(1, 2);
    tied.put("tie_word_embeddings", true);
    var e = assertThrows(IllegalArgumentException.class, () -> ModelConfig.fromJson(tied, "config.json"));
    assertTrue(e.getMessage().contains("tie_word_embeddings"), e.getMessage());
    ObjectNode odd = TinyModels.GPTJ.configJson(1, 2);
    odd.put("rotary_dim", 3);
    assertTrue(assertThrows(IllegalArgumentException.class, () -> ModelConfig.fromJson(odd, "config.json")).getMessage().contains("rotary_dim"));
    ObjectNode t5 = TinyModels.GPTJ.configJson(1, 2);
    t5.put("model_type", "t5");
    String msg = assertThrows(IllegalArgumentException.class, () -> ModelConfig.fromJson(t5, "config.json")).getMessage();
    assertTrue(msg.contains("supported: llama, mistral, qwen2, gpt2, gptj"), msg);
  }

  // ---- the float64 reference ----

  static double[] w(Map<String, Tensor> t, String k) {
    float[] f = t.get(k).toFloatArray();
    double[] d = new double[f.length];
    for (int i = 0; i < f.length; i++) {
      d[i] = f[i];
    }
    return d;
  }

  /** x (T, in) · Wᵀ + b, with W stored (out, in) as nn.Linear. */
  static double[][] linear(double[][] x, double[] wt, int out, double[] b) {
    int in = x[0].length;
    double[][] y = new double[x.length][out];
    for (int i = 0; i < x.length; i++) {
      for (int o = 0; o < out; o++) {
        double s = b == null ? 0 : b[o];
        for (int k = 0; k < in; k++) {
          s += x[i][k] * wt[o * in + k];
        }
        y[i][o] = s;
      }
    }
    return y;
  }

  static double[][] add(double[][] x, double[][] y) {
    double[][] z = new double[x.length][x[0].length];
    for (int i = 0; i < x.length; i++) {
      for (int j = 0; j < x[i].length; j++) {
        z[i][j] = x[i][j] + y[i][j];
      }
    }
    return z;
  }

  /**
   * Causal attention of one row, softmax(q·kᵀ/√hd)·v per head, the probabilities through the row's
   * mask at {@code site} (rate p): q, k and v (T, ·) are read from column offsets qo, ko and vo; nh
   * query heads share nkv key/value heads (grouped-query attention: query head h reads kv head
   * h / (nh / nkv); nkv = nh for plain multi-head attention). Returns (T, nh·hd).
   */
  static double[][] causalAttention(double[][] q, int qo, double[][] k, int ko, double[][] v, int vo, int nh, int nkv, int hd, RowMasks masks,
      String site, double p) {
    int len = q.length;
    double[][] a = new double[len][nh * hd];
    for (int head = 0; head < nh; head++) {
      int kvh = head / (nh / nkv);
      for (int i = 0; i < len; i++) {
        double[] s = new double[i + 1];
        double max = Double.NEGATIVE_INFINITY;
        for (int j = 0; j <= i; j++) {
          double d = 0;
          for (int e = 0; e < hd; e++) {
            d += q[i][qo + head * hd + e] * k[j][ko + kvh * hd + e];
          }
          s[j] = d / Math.sqrt(hd);
          max = Math.max(max, s[j]);
        }
        double z = 0;
        for (int j = 0; j <= i; j++) {
          s[j] = Math.exp(s[j] - max);
          z += s[j];
        }
        for (int j = 0; j <= i; j++) {
          s[j] /= z;
        }
        s = masks.dropProbs(s, site, p, nh, head, i, len);
        for (int j = 0; j <= i; j++) {
          for (int e = 0; e < hd; e++) {
            a[i][head * hd + e] += s[j] * v[j][vo + kvh * hd + e];
          }
        }
      }
    }
    return a;
  }

  static double[][] layerNorm(double[][] x, double[] g, double[] b, double eps) {
    double[][] y = new double[x.length][x[0].length];
    for (int i = 0; i < x.length; i++) {
      double mean = 0;
      for (double v : x[i]) {
        mean += v;
      }
      mean /= x[i].length;
      double var = 0;
      for (double v : x[i]) {
        var += (v - mean) * (v - mean);
      }
      var /= x[i].length;
      for (int j = 0; j < x[i].length; j++) {
        y[i][j] = (x[i][j] - mean) / Math.sqrt(var + eps) * g[j] + b[j];
      }
    }
    return y;
  }

  static double geluNew(double x) {
    return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
  }

  /** apply_rotary_pos_emb on the first rd channels of each head of x (T, nh·hd), in place. */
  static void rotate(double[][] x, int nh, int hd, int rd) {
    for (int pos = 0; pos < x.length; pos++) {
      for (int n = 0; n < nh; n++) {
        for (int j = 0; j < rd / 2; j++) {
          float invFreq = (float) (1.0 / Math.pow(10000.0, (double) (2 * j) / rd)); // fp32, as create_sinusoidal_positions
          float ang = (float) pos * invFreq;
          double sin = (float) Math.sin(ang);
          double cos = (float) Math.cos(ang);
          int a = n * hd + 2 * j;
          double x0 = x[pos][a];
          double x1 = x[pos][a + 1];
          x[pos][a] = x0 * cos - x1 * sin; // rotate_every_two: (−x1, x0)
          x[pos][a + 1] = x1 * cos + x0 * sin;
        }
      }
    }
  }

  /** GPTJModel's dropouts in train mode (embd_pdrop, attn_pdrop, resid_pdrop) against the reference drawing the same masks. */
  @Test
  void trainModeDropoutsEqualTheReferenceDrawingTheSameMasks() throws Exception {
    ObjectNode cfgJson = TinyModels.GPTJ.configJson(1, 2).put("embd_pdrop", 0.1).put("attn_pdrop", 0.2).put("resid_pdrop", 0.15);
    ModelConfig c = ModelConfig.fromJson(cfgJson, "gptj");
    Map<String, Tensor> t = TinyModels.tensors(c, 21);
    Path dir = tmp.resolve("gptj-dropout");
    ModelDirectory.write(dir, cfgJson, t);
    int[] ids = {1, 7, 30, 4, 4, 19, 2, 11, 36, 5};
    double[][] eval = reference(t, c, ids, RowMasks.EVAL);
    double[][] want = reference(t, c, ids, RowMasks.of(EncoderReferenceTest.SEED, 40));
    try (LanguageModel m = LanguageModel.load(dir, Device.cpu(), DataType.FLOAT64); NDManager s = m.manager().newSubManager()) {
      var ctx = new ForwardContext(s, Map.of(), LinearDelta.NONE, new Dropout(EncoderReferenceTest.SEED, new long[] {40}, true));
      double[] got = m.forward(ctx, Batch.of(new int[][] {ids}, new int[1][ids.length])).toType(DataType.FLOAT64, false).toDoubleArray();
      int v = c.vocabSize();
      for (int i = 0; i < ids.length; i++) {
        for (int j = 0; j < v; j++) {
          assertEquals(want[i][j], got[i * v + j], 1e-9 * (1 + Math.abs(want[i][j])), "position " + i + " logit " + j);
        }
      }
      assertTrue(Math.abs(want[3][0] - eval[3][0]) > 1e-6, "train mode drops");
    }
  }

  static double[][] reference(Map<String, Tensor> t, ModelConfig c, int[] ids, RowMasks masks) {
    double embd = EncoderReferenceTest.rate(c, "embd_pdrop", 0);
    double attnP = EncoderReferenceTest.rate(c, "attn_pdrop", 0);
    double resid = EncoderReferenceTest.rate(c, "resid_pdrop", 0);
    int h = c.hidden();
    int nh = c.heads();
    int hd = c.headDim();
    int len = ids.length;
    double[] wte = w(t, "transformer.wte.weight");
    double[][] x = new double[len][h];
    for (int i = 0; i < len; i++) {
      System.arraycopy(wte, ids[i] * h, x[i], 0, h);
    }
    x = masks.drop(x, "transformer.drop", embd);
    for (int l = 0; l < c.layers(); l++) {
      String p = "transformer.h." + l + ".";
      double[][] n = layerNorm(x, w(t, p + "ln_1.weight"), w(t, p + "ln_1.bias"), c.normEps());
      double[][] q = linear(n, w(t, p + "attn.q_proj.weight"), h, null);
      double[][] k = linear(n, w(t, p + "attn.k_proj.weight"), h, null);
      double[][] v = linear(n, w(t, p + "attn.v_proj.weight"), h, null);
      rotate(q, nh, hd, c.rotaryDim());
      rotate(k, nh, hd, c.rotaryDim());
      double[][] a = causalAttention(q, 0, k, 0, v, 0, nh, nh, hd, masks, p + "attn.attn_dropout", attnP);
      double[][] attn = masks.drop(linear(a, w(t, p + "attn.out_proj.weight"), h, null), p + "attn.resid_dropout", resid);
      double[][] fc = linear(n, w(t, p + "mlp.fc_in.weight"), c.intermediate(), w(t, p + "mlp.fc_in.bias"));
      for (double[] row : fc) {
        for (int j = 0; j < row.length; j++) {
          row[j] = geluNew(row[j]);
        }
      }
      double[][] mlp = masks.drop(linear(fc, w(t, p + "mlp.fc_out.weight"), h, w(t, p + "mlp.fc_out.bias")), p + "mlp.dropout", resid);
      for (int i = 0; i < len; i++) {
        for (int j = 0; j < h; j++) {
          x[i][j] = attn[i][j] + mlp[i][j] + x[i][j];
        }
      }
    }
    double[][] f = layerNorm(x, w(t, "transformer.ln_f.weight"), w(t, "transformer.ln_f.bias"), c.normEps());
    return linear(f, w(t, "lm_head.weight"), c.vocabSize(), w(t, "lm_head.bias"));
  }
}
