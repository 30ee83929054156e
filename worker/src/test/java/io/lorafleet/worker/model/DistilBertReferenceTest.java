package io.lorafleet.worker.model;

import static io.lorafleet.worker.model.EncoderReferenceTest.add;
import static io.lorafleet.worker.model.EncoderReferenceTest.dot;
import static io.lorafleet.worker.model.EncoderReferenceTest.layerNorm;
import static io.lorafleet.worker.model.EncoderReferenceTest.linear;
import static io.lorafleet.worker.model.EncoderReferenceTest.map;
import static io.lorafleet.worker.model.EncoderReferenceTest.rows;
import static io.lorafleet.worker.model.EncoderReferenceTest.softmax;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.worker.TinyModels;
import io.lorafleet.worker.safetensors.Tensor;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * DistilBertForSequenceClassification against a float64 implementation written from transformers'
 * modeling_distilbert.py (eval mode): Embeddings, TransformerBlock (MultiHeadSelfAttention with q
 * scaled by 1/√head_dim, sa_layer_norm, FFN lin1–gelu–lin2, output_layer_norm, LayerNorm eps
 * 1e-12), and the head classifier(relu(pre_classifier(h[:, 0]))); on a long row and a padded short
 * one, text pairs whose type ids the model does not read.
 */
class DistilBertReferenceTest {
  @TempDir Path tmp;

  private static final int[] LONG = {1, 7, 30, 4, 4, 2, 19, 22, 11, 36, 5, 2};
  private static final int[] SHORT = {1, 12, 2, 8, 2};

  @Test
  void distilbertLogitsEqualAFloat64ImplementationOfModelingDistilbert() throws Exception {
    ModelConfig c = ModelConfig.fromJson(TinyModels.DISTILBERT.configJson(1, 2), "distilbert");
    Map<String, Tensor> t = TinyModels.tensors(c, 31);
    check(c, t, t);
  }

  /** DistilBertModel's checkpoint (no "distilbert." prefix, no head): pre_classifier and classifier are initialized, seeded by name. */
  @Test
  void aBareCheckpointLoadsWithAnInitializedPreClassifier() throws Exception {
    ModelConfig c = ModelConfig.fromJson(TinyModels.DISTILBERT.configJson(1, 2), "distilbert");
    Map<String, Tensor> t = TinyModels.tensors(c, 31);
    Map<String, Tensor> bare = new LinkedHashMap<>();
    t.forEach((k, v) -> {
      if (k.startsWith("distilbert.")) {
        bare.put(k.substring("distilbert.".length()), v);
      }
    });
    Map<String, Tensor> expected = new LinkedHashMap<>(t);
    for (String k : List.of("pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias")) {
      expected.put(k, HeadInit.tensor(c, Backbone.of(c).params(c).stream().filter(p -> p.name().equals(k)).findFirst().orElseThrow()));
    }
    check(c, bare, expected);
  }

  private void check(ModelConfig c, Map<String, Tensor> stored, Map<String, Tensor> expected) throws Exception {
    Path dir = tmp.resolve("distilbert" + stored.size());
    ModelDirectory.write(dir, TinyModels.DISTILBERT.configJson(1, 2), stored);
    Map<String, double[]> w = EncoderReferenceTest.doubles(expected);
    double[] wantLong = distilbert(w, c, LONG, RowMasks.EVAL);
    double[] wantShort = distilbert(w, c, SHORT, RowMasks.EVAL);
    double[] trainLong = distilbert(w, c, LONG, RowMasks.of(EncoderReferenceTest.SEED, EncoderReferenceTest.KEYS[0]));
    double[] trainShort = distilbert(w, c, SHORT, RowMasks.of(EncoderReferenceTest.SEED, EncoderReferenceTest.KEYS[1]));
    try (LanguageModel m = LanguageModel.load(dir, Device.cpu(), DataType.FLOAT64); NDManager s = m.manager().newSubManager()) {
      Batch batch = Batch.classification(new int[][] {LONG, SHORT}, new int[][] {{0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1}, {0, 0, 0, 1, 1}}, new float[] {0, 1});
      int l = c.numLabels();
      EncoderReferenceTest.assertRows(wantLong, wantShort, EncoderReferenceTest.logits(m, s, batch, false), l, "eval mode");
      EncoderReferenceTest.assertRows(trainLong, trainShort, EncoderReferenceTest.logits(m, s, batch, true), l,
          "train mode, the reference drawing the same masks");
      assertTrue(Math.abs(wantLong[0] - wantLong[1]) > 1e-3, "the labels' logits differ");
      assertTrue(Math.abs(wantLong[0] - trainLong[0]) > 1e-6, "train mode drops");
    }
  }

  /** DistilBertForSequenceClassification on one unpadded row. */
  static double[] distilbert(Map<String, double[]> w, ModelConfig c, int[] ids, RowMasks masks) {
    double drop = EncoderReferenceTest.rate(c, "dropout", 0.1);
    double probsP = EncoderReferenceTest.rate(c, "attention_dropout", 0.1);
    int h = c.hidden();
    int nh = c.heads();
    int hd = h / nh;
    int[] pos = new int[ids.length];
    for (int i = 0; i < ids.length; i++) {
      pos[i] = i;
    }
    String e = "distilbert.embeddings.";
    double[][] x = add(rows(w.get(e + "word_embeddings.weight"), ids, h), rows(w.get(e + "position_embeddings.weight"), pos, h));
    x = masks.drop(layerNorm(x, w.get(e + "LayerNorm.weight"), w.get(e + "LayerNorm.bias"), 1e-12), e + "dropout", drop);
    for (int l = 0; l < c.layers(); l++) {
      String p = "distilbert.transformer.layer." + l + ".";
      double[][] q = linear(x, w.get(p + "attention.q_lin.weight"), w.get(p + "attention.q_lin.bias"));
      double[][] k = linear(x, w.get(p + "attention.k_lin.weight"), w.get(p + "attention.k_lin.bias"));
      double[][] v = linear(x, w.get(p + "attention.v_lin.weight"), w.get(p + "attention.v_lin.bias"));
      double[][] a = new double[ids.length][h];
      for (int head = 0; head < nh; head++) {
        for (int i = 0; i < ids.length; i++) {
          double[] s = new double[ids.length];
          for (int j = 0; j < ids.length; j++) {
            s[j] = dot(q[i], head * hd, k[j], head * hd, hd) / Math.sqrt(hd); // q / √dim_per_head, then q·kᵀ
          }
          double[] pr = masks.dropProbs(softmax(s), p + "attention.dropout", probsP, nh, head, i);
          for (int j = 0; j < ids.length; j++) {
            for (int d = 0; d < hd; d++) {
              a[i][head * hd + d] += pr[j] * v[j][head * hd + d];
            }
          }
        }
      }
      double[][] sa = layerNorm(add(linear(a, w.get(p + "attention.out_lin.weight"), w.get(p + "attention.out_lin.bias")), x),
          w.get(p + "sa_layer_norm.weight"), w.get(p + "sa_layer_norm.bias"), 1e-12);
      double[][] ffn = masks.drop(linear(map(linear(sa, w.get(p + "ffn.lin1.weight"), w.get(p + "ffn.lin1.bias")), EncoderReferenceTest::gelu),
          w.get(p + "ffn.lin2.weight"), w.get(p + "ffn.lin2.bias")), p + "ffn.dropout", drop);
      x = layerNorm(add(ffn, sa), w.get(p + "output_layer_norm.weight"), w.get(p + "output_layer_norm.bias"), 1e-12);
    }
    double[][] pooled = map(linear(new double[][] {x[0]}, w.get("pre_classifier.weight"), w.get("pre_classifier.bias")), z -> Math.max(z, 0));
    double[] dropped = masks.dropVector(pooled[0], "dropout", EncoderReferenceTest.rate(c, "seq_classif_dropout", 0.2));
    return linear(new double[][] {dropped}, w.get("classifier.weight"), w.get("classifier.bias"))[0];
  }
}
