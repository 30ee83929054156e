package io.lorafleet.worker.model;

import static io.lorafleet.worker.model.EncoderReferenceTest.add;
import static io.lorafleet.worker.model.EncoderReferenceTest.block;
import static io.lorafleet.worker.model.EncoderReferenceTest.dot;
import static io.lorafleet.worker.model.EncoderReferenceTest.layerNorm;
import static io.lorafleet.worker.model.EncoderReferenceTest.linear;
import static io.lorafleet.worker.model.EncoderReferenceTest.map;
import static io.lorafleet.worker.model.EncoderReferenceTest.rows;
import static io.lorafleet.worker.model.EncoderReferenceTest.softmax;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.worker.TinyModels;
import io.lorafleet.worker.safetensors.Tensor;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * BertForSequenceClassification against a float64 implementation written from transformers'
 * models/bert/modeling_bert.py (v4.4x): BertEmbeddings (word + absolute position from 0 + token
 * type, then LayerNorm), BertSelfAttention's softmax(q·kᵀ/√hd + mask)·v, BertSelfOutput /
 * BertIntermediate / BertOutput, BertPooler tanh(dense(h[:, 0])) and the classifier Linear. Rows are
 * text pairs, so token types 0 and 1 both count; a padded row must give its unpadded logits.
 */
class BertReferenceTest {
  @TempDir Path tmp;

  private static final int[] LONG = {1, 7, 30, 4, 4, 2, 19, 22, 11, 36, 5, 2};
  private static final int[] LONG_TYPES = {0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1};
  private static final int[] SHORT = {1, 12, 2, 8, 2};
  private static final int[] SHORT_TYPES = {0, 0, 0, 1, 1};

  @Test
  void bertLogitsOnTextPairsEqualAFloat64ImplementationOfModelingBert() throws Exception {
    Map<String, Tensor> t = TinyModels.tensors(ModelConfig.fromJson(TinyModels.BERT.configJson(1, 2), "bert"), 31);
    check(TinyModels.BERT.configJson(1, 2), t, t);
  }

  /** A checkpoint as BertModel or sentence-transformers save it: no "bert." prefix, and no pooler (it is initialized, seeded by name). */
  @Test
  void aCheckpointWithoutPrefixOrPoolerLoadsWithAnInitializedPooler() throws Exception {
    ModelConfig c = ModelConfig.fromJson(TinyModels.BERT.configJson(1, 2), "bert");
    Map<String, Tensor> t = TinyModels.tensors(c, 31);
    Map<String, Tensor> bare = new LinkedHashMap<>();
    t.forEach((k, v) -> {
      if (!k.startsWith("bert.pooler.") && !k.startsWith("classifier.")) {
        bare.put(k.substring("bert.".length()), v);
      }
    });
    bare.put("cls.predictions.bias", Tensor.ofFloats(new float[c.vocabSize()], new long[] {c.vocabSize()})); // BertForMaskedLM's head: not read
    Map<String, Tensor> expected = new LinkedHashMap<>(t);
    for (String k : List.of("bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias")) {
      expected.put(k, HeadInit.tensor(c, Backbone.of(c).params(c).stream().filter(p -> p.name().equals(k)).findFirst().orElseThrow()));
    }
    check(TinyModels.BERT.configJson(1, 2), bare, expected);
  }

  @Test
  void xlmRobertaIsRobertasNetworkUnderItsOwnModelType() {
    ObjectNode j = TinyModels.ROBERTA.configJson(1, 2).put("model_type", "xlm-roberta");
    ModelConfig c = ModelConfig.fromJson(j, "x");
    assertEquals(Architecture.ROBERTA, c.arch());
    assertEquals("XLMRobertaForSequenceClassification", Backbone.of(c).sequenceClassifierClass(c));
  }

  /** The state_dict keys of BertForSequenceClassification for 2 layers. */
  @Test
  void checkpointKeysAreTransformers() {
    TreeSet<String> bert = new TreeSet<>(List.of("bert.embeddings.word_embeddings.weight", "bert.embeddings.position_embeddings.weight",
        "bert.embeddings.token_type_embeddings.weight", "bert.embeddings.LayerNorm.weight", "bert.embeddings.LayerNorm.bias", "bert.pooler.dense.weight",
        "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"));
    for (int i = 0; i < 2; i++) {
      for (String m : List.of("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense", "attention.output.LayerNorm",
          "intermediate.dense", "output.dense", "output.LayerNorm")) {
        bert.add("bert.encoder.layer." + i + "." + m + ".weight");
        bert.add("bert.encoder.layer." + i + "." + m + ".bias");
      }
    }
    ModelConfig c = ModelConfig.fromJson(TinyModels.BERT.configJson(1, 2), "bert");
    assertEquals(bert, new TreeSet<>(Backbone.of(c).params(c).stream().map(ParamSpec::name).toList()));
    assertEquals(List.of("classifier.weight", "classifier.bias"), Backbone.of(c).headParams(c).stream().map(ParamSpec::name).toList(),
        "only the classifier is trained whole, as PEFT's SEQ_CLS modules_to_save; the pooler stays frozen");
  }

  @Test
  void aTokenTypeBeyondTypeVocabSizeIsRefusedByRowAndToken() throws Exception {
    ObjectNode j = TinyModels.BERT.configJson(1, 2);
    ModelConfig c = ModelConfig.fromJson(j, "bert");
    Path dir = tmp.resolve("types");
    ModelDirectory.write(dir, j, TinyModels.tensors(c, 31));
    try (LanguageModel m = LanguageModel.load(dir, Device.cpu(), DataType.FLOAT32); NDManager s = m.manager().newSubManager()) {
      var e = assertThrows(IllegalArgumentException.class, () -> m.forward(ForwardContext.inference(s, LinearDelta.NONE),
          Batch.classification(new int[][] {SHORT}, new int[][] {{0, 0, 0, 2, 2}}, new float[] {0})));
      assertTrue(e.getMessage().contains("row 0, token 3 has token type 2") && e.getMessage().contains("type_vocab_size is 2"), e.getMessage());
    }
  }

  private void check(ObjectNode cfgJson, Map<String, Tensor> stored, Map<String, Tensor> expected) throws Exception {
    ModelConfig c = ModelConfig.fromJson(cfgJson, "bert");
    Path dir = tmp.resolve("bert" + stored.size());
    ModelDirectory.write(dir, cfgJson, stored);
    Map<String, double[]> w = EncoderReferenceTest.doubles(expected);
    double[] wantLong = bert(w, c, LONG, LONG_TYPES, RowMasks.EVAL);
    double[] wantShort = bert(w, c, SHORT, SHORT_TYPES, RowMasks.EVAL);
    double[] wantLongNoTypes = bert(w, c, LONG, new int[LONG.length], RowMasks.EVAL);
    assertTrue(Math.abs(wantLong[0] - wantLongNoTypes[0]) > 1e-6, "token types change the logits");
    double[] trainLong = bert(w, c, LONG, LONG_TYPES, RowMasks.of(EncoderReferenceTest.SEED, EncoderReferenceTest.KEYS[0]));
    double[] trainShort = bert(w, c, SHORT, SHORT_TYPES, RowMasks.of(EncoderReferenceTest.SEED, EncoderReferenceTest.KEYS[1]));
    try (LanguageModel m = LanguageModel.load(dir, Device.cpu(), DataType.FLOAT64); NDManager s = m.manager().newSubManager()) {
      Batch batch = Batch.classification(new int[][] {LONG, SHORT}, new int[][] {LONG_TYPES, SHORT_TYPES}, new float[] {0, 1});
      int l = c.numLabels();
      EncoderReferenceTest.assertRows(wantLong, wantShort, EncoderReferenceTest.logits(m, s, batch, false), l, "eval mode");
      EncoderReferenceTest.assertRows(trainLong, trainShort, EncoderReferenceTest.logits(m, s, batch, true), l,
          "train mode, the reference drawing the same masks");
      assertTrue(Math.abs(wantLong[0] - wantLong[1]) > 1e-3, "the labels' logits differ");
      assertTrue(Math.abs(wantLong[0] - trainLong[0]) > 1e-6, "train mode drops");
    }
  }

  /** BertForSequenceClassification on one unpadded row with its token types. */
  static double[] bert(Map<String, double[]> w, ModelConfig c, int[] ids, int[] types, RowMasks masks) {
    int[] pos = new int[ids.length];
    for (int i = 0; i < ids.length; i++) {
      pos[i] = i;
    }
    double[][] x = lastHidden(w, c, ids, types, pos, "bert.", masks);
    double[][] pooled = map(linear(new double[][] {x[0]}, w.get("bert.pooler.dense.weight"), w.get("bert.pooler.dense.bias")), Math::tanh);
    double p = EncoderReferenceTest.rate(c, "classifier_dropout", EncoderReferenceTest.rate(c, "hidden_dropout_prob", 0.1));
    return linear(new double[][] {masks.dropVector(pooled[0], "dropout", p)}, w.get("classifier.weight"), w.get("classifier.bias"))[0];
  }

  /** BertModel's (and RobertaModel's) last hidden state (T, H) for one unpadded row at positions {@code pos}, keys under {@code prefix}. */
  static double[][] lastHidden(Map<String, double[]> w, ModelConfig c, int[] ids, int[] types, int[] pos, String prefix, RowMasks masks) {
    int h = c.hidden();
    int nh = c.heads();
    int hd = h / nh;
    String e = prefix + "embeddings.";
    double[][] x = add(add(rows(w.get(e + "word_embeddings.weight"), ids, h), rows(w.get(e + "token_type_embeddings.weight"), types, h)),
        rows(w.get(e + "position_embeddings.weight"), pos, h));
    double hidden = EncoderReferenceTest.rate(c, "hidden_dropout_prob", 0.1);
    double probsP = EncoderReferenceTest.rate(c, "attention_probs_dropout_prob", 0.1);
    x = masks.drop(layerNorm(x, w.get(e + "LayerNorm.weight"), w.get(e + "LayerNorm.bias"), c.normEps()), e + "dropout", hidden);
    for (int l = 0; l < c.layers(); l++) {
      String p = prefix + "encoder.layer." + l + ".";
      double[][] q = linear(x, w.get(p + "attention.self.query.weight"), w.get(p + "attention.self.query.bias"));
      double[][] k = linear(x, w.get(p + "attention.self.key.weight"), w.get(p + "attention.self.key.bias"));
      double[][] v = linear(x, w.get(p + "attention.self.value.weight"), w.get(p + "attention.self.value.bias"));
      double[][] a = new double[ids.length][h];
      for (int head = 0; head < nh; head++) {
        for (int i = 0; i < ids.length; i++) {
          double[] s = new double[ids.length];
          for (int j = 0; j < ids.length; j++) {
            s[j] = dot(q[i], head * hd, k[j], head * hd, hd) / Math.sqrt(hd);
          }
          double[] pr = masks.dropProbs(softmax(s), p + "attention.self.dropout", probsP, nh, head, i);
          for (int j = 0; j < ids.length; j++) {
            for (int d = 0; d < hd; d++) {
              a[i][head * hd + d] += pr[j] * v[j][head * hd + d];
            }
          }
        }
      }
      x = block(w, p, x, a, c.normEps(), masks, hidden);
    }
    return x;
  }
}
