package io.lorafleet.worker.model;

import static io.lorafleet.worker.model.GptjReferenceTest.geluNew;
import static io.lorafleet.worker.model.GptjReferenceTest.layerNorm;
import static io.lorafleet.worker.model.GptjReferenceTest.w;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.worker.TinyModels;
import io.lorafleet.worker.safetensors.Tensor;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * GPT2LMHeadModel against a float64 implementation written from transformers'
 * models/gpt2/modeling_gpt2.py, in eval mode and in train mode with its three dropouts
 * (GPT2Model.drop on wte + wpe at embd_pdrop; GPT2Attention's attn_dropout on the probabilities at
 * attn_pdrop and resid_dropout after c_proj at resid_pdrop; GPT2MLP's dropout after its c_proj at
 * resid_pdrop), the reference drawing the masks {@link Dropout} draws for the same rows. Conv1D
 * weights are (in, out); c_attn's output splits into q | k | v; the head is tied to wte.
 */
class Gpt2ReferenceTest {
  @TempDir Path tmp;

  private static final int[][] IDS = {{1, 7, 30, 4, 4, 19, 2, 11, 36, 5}, {3, 9, 2, 14, 0, 0, 0, 0, 0, 0}};
  private static final int[] LENGTHS = {10, 4};

  @Test
  void logitsInEvalAndTrainModeEqualAFloat64ImplementationOfModelingGpt2() throws Exception {
    ObjectNode cfgJson = TinyModels.GPT2.configJson(1, 2).put("attn_pdrop", 0.2).put("resid_pdrop", 0.15); // embd_pdrop: GPT2Config's 0.1
    ModelConfig c = ModelConfig.fromJson(cfgJson, "gpt2");
    Map<String, Tensor> t = TinyModels.tensors(c, 23);
    Path dir = tmp.resolve("gpt2");
    ModelDirectory.write(dir, cfgJson, t);
    assertTrainAndEvalModes(dir, c, new long[] {8, 3}, (ids, masks) -> reference(t, c, ids, masks), 2);
  }

  /** A decoder's float64 reference: logits (T, V) of one unpadded row under that row's masks. */
  interface Reference {
    double[][] logits(int[] ids, RowMasks masks);
  }

  /**
   * The model in {@code dir} on a batch of a long row and a padded short one, in eval mode and in
   * train mode with rows keyed {@code keys}, against {@code ref} drawing each row's masks, to 1e-9;
   * in train mode position {@code probe} must differ from eval mode (the dropouts are on).
   */
  static void assertTrainAndEvalModes(Path dir, ModelConfig c, long[] keys, Reference ref, int probe) {
    try (LanguageModel m = LanguageModel.load(dir, Device.cpu(), DataType.FLOAT64); NDManager s = m.manager().newSubManager()) {
      Batch batch = Batch.of(IDS, new int[2][IDS[0].length]);
      for (boolean train : new boolean[] {false, true}) {
        Dropout d = train ? new Dropout(EncoderReferenceTest.SEED, keys, true) : Dropout.OFF;
        double[] got = m.forward(new ForwardContext(s, Map.of(), LinearDelta.NONE, d), batch).toType(DataType.FLOAT64, false).toDoubleArray();
        int v = c.vocabSize();
        int tt = IDS[0].length;
        for (int r = 0; r < 2; r++) {
          int[] ids = java.util.Arrays.copyOf(IDS[r], LENGTHS[r]); // a padded row's real tokens see only themselves
          double[][] want = ref.logits(ids, train ? RowMasks.of(EncoderReferenceTest.SEED, keys[r]) : RowMasks.EVAL);
          double[][] eval = ref.logits(ids, RowMasks.EVAL);
          for (int i = 0; i < ids.length; i++) {
            for (int j = 0; j < v; j++) {
              assertEquals(want[i][j], got[(r * tt + i) * v + j], 1e-9 * (1 + Math.abs(want[i][j])), (train ? "train" : "eval") + " mode, row " + r
                  + ", position " + i + ", logit " + j);
            }
          }
          assertTrue(!train || Math.abs(want[probe][0] - eval[probe][0]) > 1e-6, "train mode drops");
        }
      }
    }
  }

  /** x (T, in) · W + b for a Conv1D weight stored (in, out). */
  static double[][] conv1d(double[][] x, double[] wt, double[] b) {
    int in = x[0].length;
    int out = b.length;
    double[][] y = new double[x.length][out];
    for (int i = 0; i < x.length; i++) {
      for (int o = 0; o < out; o++) {
        double acc = b[o];
        for (int k = 0; k < in; k++) {
          acc += x[i][k] * wt[k * out + o];
        }
        y[i][o] = acc;
      }
    }
    return y;
  }

  /** GPT2LMHeadModel's logits (T, V) for one unpadded row, with that row's masks. */
  static double[][] reference(Map<String, Tensor> t, ModelConfig c, int[] ids, RowMasks masks) {
    double embd = EncoderReferenceTest.rate(c, "embd_pdrop", 0.1);
    double attnP = EncoderReferenceTest.rate(c, "attn_pdrop", 0.1);
    double resid = EncoderReferenceTest.rate(c, "resid_pdrop", 0.1);
    int h = c.hidden();
    int nh = c.heads();
    int hd = h / nh;
    int len = ids.length;
    double[] wte = w(t, "transformer.wte.weight");
    double[] wpe = w(t, "transformer.wpe.weight");
    double[][] x = new double[len][h];
    for (int i = 0; i < len; i++) {
      for (int j = 0; j < h; j++) {
        x[i][j] = wte[ids[i] * h + j] + wpe[i * h + j];
      }
    }
    x = masks.drop(x, "transformer.drop", embd);
    for (int l = 0; l < c.layers(); l++) {
      String p = "transformer.h." + l + ".";
      double[][] qkv = conv1d(layerNorm(x, w(t, p + "ln_1.weight"), w(t, p + "ln_1.bias"), c.normEps()), w(t, p + "attn.c_attn.weight"),
          w(t, p + "attn.c_attn.bias"));
      double[][] a = GptjReferenceTest.causalAttention(qkv, 0, qkv, h, qkv, 2 * h, nh, nh, hd, masks, p + "attn.attn_dropout", attnP); // q | k | v
      double[][] attn = masks.drop(conv1d(a, w(t, p + "attn.c_proj.weight"), w(t, p + "attn.c_proj.bias")), p + "attn.resid_dropout", resid);
      x = GptjReferenceTest.add(x, attn);
      double[][] fc = conv1d(layerNorm(x, w(t, p + "ln_2.weight"), w(t, p + "ln_2.bias"), c.normEps()), w(t, p + "mlp.c_fc.weight"),
          w(t, p + "mlp.c_fc.bias"));
      for (double[] row : fc) {
        for (int j = 0; j < row.length; j++) {
          row[j] = geluNew(row[j]);
        }
      }
      x = GptjReferenceTest.add(x, masks.drop(conv1d(fc, w(t, p + "mlp.c_proj.weight"), w(t, p + "mlp.c_proj.bias")), p + "mlp.dropout", resid));
    }
    double[][] f = layerNorm(x, w(t, "transformer.ln_f.weight"), w(t, "transformer.ln_f.bias"), c.normEps());
    return GptjReferenceTest.linear(f, wte, c.vocabSize(), null); // lm_head tied to wte (vocab, H), used as nn.Linear's (out, in)
  }
}
