package io.lorafleet.worker.model;

import static io.lorafleet.worker.model.GptjReferenceTest.linear;
import static io.lorafleet.worker.model.GptjReferenceTest.w;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.worker.TinyModels;
import io.lorafleet.worker.safetensors.Tensor;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * LlamaForCausalLM against a float64 implementation written from transformers'
 * models/llama/modeling_llama.py, in eval mode and in train mode with {@code attention_dropout}
 * (eager_attention_forward's dropout on the probabilities), the reference drawing the masks
 * {@link Dropout} draws for the same rows: LlamaRMSNorm x·rsqrt(mean(x²) + eps)·w; q/k/v/o without
 * bias; rotary embeddings with rotate_half, inv_freq and the angles in fp32 as LlamaRotaryEmbedding
 * computes them; grouped-query attention (each kv head serves heads/kv_heads query heads) under the
 * causal mask; the SwiGLU MLP down(silu(gate(x))·up(x)); model.norm and an untied lm_head.
 */
class LlamaReferenceTest {
  @TempDir Path tmp;

  @Test
  void logitsInEvalAndTrainModeEqualAFloat64ImplementationOfModelingLlama() throws Exception {
    ObjectNode cfgJson = TinyModels.LLAMA.configJson(1, 2).put("attention_dropout", 0.2);
    ModelConfig c = ModelConfig.fromJson(cfgJson, "llama");
    assertTrue(c.kvHeads() < c.heads(), "grouped-query attention");
    Map<String, Tensor> t = TinyModels.tensors(c, 29);
    Path dir = tmp.resolve("llama");
    ModelDirectory.write(dir, cfgJson, t);
    Gpt2ReferenceTest.assertTrainAndEvalModes(dir, c, new long[] {6, 13}, (ids, masks) -> reference(t, c, ids, masks), 3);
  }

  static double[][] rmsNorm(double[][] x, double[] g, double eps) {
    double[][] y = new double[x.length][x[0].length];
    for (int i = 0; i < x.length; i++) {
      double ms = 0;
      for (double v : x[i]) {
        ms += v * v;
      }
      double r = 1 / Math.sqrt(ms / x[i].length + eps);
      for (int j = 0; j < x[i].length; j++) {
        y[i][j] = x[i][j] * r * g[j];
      }
    }
    return y;
  }

  /** apply_rotary_pos_emb with rotate_half on every head of x (T, n·hd), in place; angles in fp32. */
  static void rotate(double[][] x, int n, int hd, double theta) {
    int half = hd / 2;
    for (int pos = 0; pos < x.length; pos++) {
      for (int h = 0; h < n; h++) {
        for (int f = 0; f < half; f++) {
          float ang = (float) pos * (float) (1.0 / Math.pow(theta, (2.0 * f) / hd));
          double cos = (float) Math.cos(ang);
          double sin = (float) Math.sin(ang);
          int a = h * hd + f;
          double x1 = x[pos][a];
          double x2 = x[pos][a + half];
          x[pos][a] = x1 * cos - x2 * sin;
          x[pos][a + half] = x2 * cos + x1 * sin;
        }
      }
    }
  }

  /** LlamaForCausalLM's logits (T, V) for one unpadded row, with that row's masks. */
  static double[][] reference(Map<String, Tensor> t, ModelConfig c, int[] ids, RowMasks masks) {
    double p = EncoderReferenceTest.rate(c, "attention_dropout", 0);
    int h = c.hidden();
    int nh = c.heads();
    int nkv = c.kvHeads();
    int hd = c.headDim();
    int len = ids.length;
    double[] emb = w(t, "model.embed_tokens.weight");
    double[][] x = new double[len][h];
    for (int i = 0; i < len; i++) {
      System.arraycopy(emb, ids[i] * h, x[i], 0, h);
    }
    for (int l = 0; l < c.layers(); l++) {
      String pre = "model.layers." + l + ".";
      double[][] n = rmsNorm(x, w(t, pre + "input_layernorm.weight"), c.normEps());
      double[][] q = linear(n, w(t, pre + "self_attn.q_proj.weight"), nh * hd, null);
      double[][] k = linear(n, w(t, pre + "self_attn.k_proj.weight"), nkv * hd, null);
      double[][] v = linear(n, w(t, pre + "self_attn.v_proj.weight"), nkv * hd, null);
      rotate(q, nh, hd, c.ropeTheta());
      rotate(k, nkv, hd, c.ropeTheta());
      double[][] a = GptjReferenceTest.causalAttention(q, 0, k, 0, v, 0, nh, nkv, hd, masks, pre + "self_attn.attention_dropout", p);
      x = GptjReferenceTest.add(x, linear(a, w(t, pre + "self_attn.o_proj.weight"), h, null));
      double[][] n2 = rmsNorm(x, w(t, pre + "post_attention_layernorm.weight"), c.normEps());
      double[][] gate = linear(n2, w(t, pre + "mlp.gate_proj.weight"), c.intermediate(), null);
      double[][] up = linear(n2, w(t, pre + "mlp.up_proj.weight"), c.intermediate(), null);
      for (int i = 0; i < len; i++) {
        for (int j = 0; j < c.intermediate(); j++) {
          double g = gate[i][j];
          gate[i][j] = g / (1 + Math.exp(-g)) * up[i][j];
        }
      }
      x = GptjReferenceTest.add(x, linear(gate, w(t, pre + "mlp.down_proj.weight"), h, null));
    }
    double[][] f = rmsNorm(x, w(t, "model.norm.weight"), c.normEps());
    return linear(f, w(t, "lm_head.weight"), c.vocabSize(), null);
  }
}
