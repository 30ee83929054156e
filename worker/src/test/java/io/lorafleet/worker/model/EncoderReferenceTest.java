package io.lorafleet.worker.model;

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
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * RoBERTa and DeBERTa-v2 sequence classifiers against independent float64 implementations written
 * from transformers' source (v4.4x):
 *
 * <ul>
 *   <li>models/roberta/modeling_roberta.py: RobertaEmbeddings (word + position + token type, then
 *       LayerNorm; create_position_ids_from_input_ids numbers real tokens padding_idx + 1 + i);
 *       BertSelfAttention's softmax(q·kᵀ/√hd + mask)·v; RobertaSelfOutput / RobertaIntermediate /
 *       RobertaOutput (LN(h + dense(a)), gelu, LN(h1 + dense(·))); RobertaClassificationHead
 *       out_proj(tanh(dense(x[:, 0, :])));
 *   <li>models/deberta_v2/modeling_deberta_v2.py: DebertaV2Embeddings; DebertaV2Encoder.get_rel_embedding
 *       (LayerNorm when norm_rel_ebd has layer_norm); build_relative_position and
 *       make_log_bucket_position; DisentangledSelfAttention with scale √(hd·scale_factor), c2p =
 *       gather(q·pos_keyᵀ, clamp(rel + span)), p2c = gather(k·pos_queryᵀ, clamp(−rel + span))ᵀ,
 *       pos_key/pos_query from key_proj/query_proj under share_att_key; ContextPooler
 *       act(dense(h[:, 0])) and the classifier.
 * </ul>
 *
 * Loops over tokens and heads stand in for the tensor code, and each index is taken as the source
 * takes it. A padded row must give its unpadded logits (the attention mask).
 */
class EncoderReferenceTest {
  @TempDir Path tmp;

  private static final int[] LONG = {1, 7, 30, 4, 4, 19, 22, 11, 36, 5, 9, 2};
  private static final int[] SHORT = {1, 12, 8, 2};

  @Test
  void robertaLogitsEqualAFloat64ImplementationOfModelingRoberta() throws Exception {
    check(TinyModels.ROBERTA, c -> {}, EncoderReferenceTest::roberta);
  }

  @Test
  void debertaV3LogitsEqualAFloat64ImplementationOfModelingDebertaV2() throws Exception {
    check(TinyModels.DEBERTA, c -> {}, EncoderReferenceTest::deberta);
  }

  /** DeBERTa-v2's other options: separate pos_key/pos_query projections, absolute positions and token types, no bucketing but a clamp at ±6. */
  @Test
  void debertaV2WithSeparatePositionProjectionsAndClampedDistances() throws Exception {
    check(TinyModels.DEBERTA, c -> {
      c.put("share_att_key", false);
      c.put("pos_att_type", "c2p|p2c");
      c.put("position_biased_input", true);
      c.put("type_vocab_size", 2);
      c.put("norm_rel_ebd", "none");
      c.put("position_buckets", -1);
      c.put("max_relative_positions", 6);
      c.put("pooler_hidden_act", "tanh");
      c.put("pooler_dropout", 0.2);
      c.put("cls_dropout", 0.3);
      c.put("attention_probs_dropout_prob", 0.25);
    }, EncoderReferenceTest::deberta);
  }

  /** DeBERTa-v2 xxlarge's shape (the LoRA paper's DeBERTa XXL): ConvLayer after the first layer, here grouped and with gelu. */
  @Test
  void debertaV2WithTheConvolutionAfterTheFirstLayer() throws Exception {
    check(TinyModels.DEBERTA, c -> {
      c.put("conv_kernel_size", 3);
      c.put("conv_act", "gelu");
      c.put("conv_groups", 2);
    }, EncoderReferenceTest::deberta);
  }

  /** c2p alone scales by √(2·hd), not √(3·hd). */
  @Test
  void debertaWithContentToPositionOnly() throws Exception {
    check(TinyModels.DEBERTA, c -> c.putArray("pos_att_type").add("c2p"), EncoderReferenceTest::deberta);
  }

  @Test
  void regressionHeadHasOneOutputAndUnsupportedOptionsAreRefused() {
    ObjectNode c = TinyModels.ROBERTA.configJson(1, 2);
    c.remove("id2label");
    c.put("num_labels", 1);
    assertTrue(ModelConfig.fromJson(c, "x").regression());
    ObjectNode conv = TinyModels.DEBERTA.configJson(1, 2).put("conv_kernel_size", 4);
    assertTrue(assertThrows(IllegalArgumentException.class, () -> ModelConfig.fromJson(conv, "cfg.json")).getMessage().contains("conv_kernel_size 4"));
    ObjectNode multi = TinyModels.ROBERTA.configJson(1, 2).put("problem_type", "multi_label_classification");
    assertTrue(assertThrows(IllegalArgumentException.class, () -> ModelConfig.fromJson(multi, "cfg.json")).getMessage().contains("multi_label"));
    ObjectNode albert = TinyModels.ROBERTA.configJson(1, 2).put("model_type", "albert");
    String refused = assertThrows(IllegalArgumentException.class, () -> ModelConfig.fromJson(albert, "cfg.json")).getMessage();
    assertTrue(refused.contains("'albert'") && refused.contains("roberta, xlm-roberta, bert, deberta-v2, distilbert"), refused);
    ObjectNode distil = TinyModels.ROBERTA.configJson(1, 2).put("model_type", "distilbert"); // BERT's field names under DistilBERT's type
    String named = assertThrows(IllegalArgumentException.class, () -> ModelConfig.fromJson(distil, "cfg.json")).getMessage();
    assertTrue(named.contains("cfg.json: missing integer field 'dim'"), named);
  }

  /** The state_dict keys of RobertaForSequenceClassification and DebertaV2ForSequenceClassification (v3 config), listed from their modules, for 2 layers. */
  @Test
  void checkpointKeysAreTransformers() {
    java.util.Set<String> roberta = new java.util.TreeSet<>(List.of("roberta.embeddings.word_embeddings.weight", "roberta.embeddings.position_embeddings.weight",
        "roberta.embeddings.token_type_embeddings.weight", "roberta.embeddings.LayerNorm.weight", "roberta.embeddings.LayerNorm.bias",
        "classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight", "classifier.out_proj.bias"));
    java.util.Set<String> deberta = new java.util.TreeSet<>(List.of("deberta.embeddings.word_embeddings.weight", "deberta.embeddings.LayerNorm.weight",
        "deberta.embeddings.LayerNorm.bias", "deberta.encoder.rel_embeddings.weight", "deberta.encoder.LayerNorm.weight", "deberta.encoder.LayerNorm.bias",
        "pooler.dense.weight", "pooler.dense.bias", "classifier.weight", "classifier.bias"));
    for (int i = 0; i < 2; i++) {
      for (String m : List.of("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense", "attention.output.LayerNorm",
          "intermediate.dense", "output.dense", "output.LayerNorm")) {
        for (String wb : List.of(".weight", ".bias")) {
          roberta.add("roberta.encoder.layer." + i + "." + m + wb);
          deberta.add("deberta.encoder.layer." + i + "." + (m.startsWith("attention.self.") ? m + "_proj" : m) + wb);
        }
      }
    }
    ModelConfig r = ModelConfig.fromJson(TinyModels.ROBERTA.configJson(1, 2), "roberta");
    ModelConfig d = ModelConfig.fromJson(TinyModels.DEBERTA.configJson(1, 2), "deberta");
    assertEquals(roberta, new java.util.TreeSet<>(Backbone.of(r).params(r).stream().map(ParamSpec::name).toList()));
    assertEquals(deberta, new java.util.TreeSet<>(Backbone.of(d).params(d).stream().map(ParamSpec::name).toList()));
  }

  /** Generation needs a causal LM: an encoder refuses a KV cache by name. */
  @Test
  void anEncoderRefusesToGenerate() {
    try (LanguageModel m = TinyModels.model(TinyModels.ROBERTA, 3, DataType.FLOAT32); NDManager s = m.manager().newSubManager()) {
      KvCache cache = m.newCache(s);
      var e = assertThrows(IllegalArgumentException.class, () -> m.forward(ForwardContext.inference(s, LinearDelta.NONE), new int[][] {{1, 2}}, cache));
      assertTrue(e.getMessage().contains("does not generate"), e.getMessage());
    }
  }

  interface Reference {
    double[] logits(Map<String, double[]> w, ModelConfig c, int[] ids, RowMasks masks);
  }

  /** The seed and row keys of the train-mode comparison: keys far apart, as two rows of a run's data order. */
  static final long SEED = 5;
  static final long[] KEYS = {17, 4};

  /**
   * The model's logits for a batch of the long row and the padded short row, in eval mode or in
   * train mode with {@link #SEED} and {@link #KEYS}.
   */
  static double[] logits(LanguageModel m, NDManager s, Batch batch, boolean train) {
    Dropout d = train ? new Dropout(SEED, KEYS, true) : Dropout.OFF;
    return m.forward(new ForwardContext(s, Map.of(), LinearDelta.NONE, d), batch).toType(DataType.FLOAT64, false).toDoubleArray();
  }

  /** got (2 rows of l logits) against the references of the long row and of the short row, to 1e-9. */
  static void assertRows(double[] wantLong, double[] wantShort, double[] got, int l, String mode) {
    assertEquals(2 * l, got.length);
    for (int k = 0; k < l; k++) {
      assertEquals(wantLong[k], got[k], 1e-9, mode + ": long row, label " + k);
      assertEquals(wantShort[k], got[l + k], 1e-9, mode + ": padded short row, label " + k);
    }
  }

  private void check(TinyModelSpec spec, Consumer<ObjectNode> tweak, Reference ref) throws Exception {
    ObjectNode cfgJson = spec.configJson(1, 2);
    tweak.accept(cfgJson);
    ModelConfig c = ModelConfig.fromJson(cfgJson, spec.modelType());
    Map<String, Tensor> t = TinyModels.tensors(c, 31);
    Path dir = tmp.resolve(spec.modelType() + cfgJson.hashCode());
    ModelDirectory.write(dir, cfgJson, t);
    Map<String, double[]> w = doubles(t);
    double[] wantLong = ref.logits(w, c, LONG, RowMasks.EVAL);
    double[] wantShort = ref.logits(w, c, SHORT, RowMasks.EVAL);
    double[] trainLong = ref.logits(w, c, LONG, RowMasks.of(SEED, KEYS[0]));
    double[] trainShort = ref.logits(w, c, SHORT, RowMasks.of(SEED, KEYS[1]));
    try (LanguageModel m = LanguageModel.load(dir, Device.cpu(), DataType.FLOAT64); NDManager s = m.manager().newSubManager()) {
      Batch batch = Batch.classification(new int[][] {LONG, SHORT}, new float[] {0, 1});
      int l = c.numLabels();
      assertRows(wantLong, wantShort, logits(m, s, batch, false), l, "eval mode");
      assertRows(trainLong, trainShort, logits(m, s, batch, true), l, "train mode, the reference drawing the same masks");
      assertTrue(Math.abs(wantLong[0] - wantLong[1]) > 1e-3, "the labels' logits differ");
      assertTrue(Math.abs(wantLong[0] - trainLong[0]) > 1e-6 && Math.abs(wantShort[0] - trainShort[0]) > 1e-6, "train mode drops");
    }
  }

  // ---- float64 reference pieces ----

  /** Each tensor's values widened to double, by name. */
  static Map<String, double[]> doubles(Map<String, Tensor> tensors) {
    Map<String, double[]> w = new LinkedHashMap<>();
    tensors.forEach((k, v) -> {
      float[] f = v.toFloatArray();
      double[] d = new double[f.length];
      for (int i = 0; i < f.length; i++) {
        d[i] = f[i];
      }
      w.put(k, d);
    });
    return w;
  }

  /** x (T, in) · Wᵀ + b, W (out, in) row-major as stored. */
  static double[][] linear(double[][] x, double[] wt, double[] b) {
    int out = b.length;
    int in = x[0].length;
    double[][] y = new double[x.length][out];
    for (int t = 0; t < x.length; t++) {
      for (int o = 0; o < out; o++) {
        double s = b[o];
        for (int i = 0; i < in; i++) {
          s += x[t][i] * wt[o * in + i];
        }
        y[t][o] = s;
      }
    }
    return y;
  }

  static double[][] layerNorm(double[][] x, double[] g, double[] b, double eps) {
    double[][] y = new double[x.length][];
    for (int t = 0; t < x.length; t++) {
      double mean = 0;
      for (double v : x[t]) {
        mean += v / x[t].length;
      }
      double var = 0;
      for (double v : x[t]) {
        var += (v - mean) * (v - mean) / x[t].length;
      }
      y[t] = new double[x[t].length];
      for (int i = 0; i < x[t].length; i++) {
        y[t][i] = (x[t][i] - mean) / Math.sqrt(var + eps) * g[i] + b[i];
      }
    }
    return y;
  }

  static double[][] add(double[][] a, double[][] b) {
    double[][] y = new double[a.length][a[0].length];
    for (int t = 0; t < a.length; t++) {
      for (int i = 0; i < a[0].length; i++) {
        y[t][i] = a[t][i] + b[t][i];
      }
    }
    return y;
  }

  /** ACT2FN["gelu"]: x·Φ(x) = x/2·(1 + erf(x/√2)). */
  static double gelu(double x) {
    return 0.5 * x * (1 + erf(x / Math.sqrt(2)));
  }

  /** erf to about 1e-15: its Maclaurin series below 3, the continued fraction of erfc above. */
  static double erf(double x) {
    double a = Math.abs(x);
    double r;
    if (a < 3) {
      double term = a;
      double sum = a;
      for (int n = 1; n < 200; n++) {
        term *= -a * a / n;
        sum += term / (2 * n + 1);
      }
      r = 2 / Math.sqrt(Math.PI) * sum;
    } else {
      double f = a;
      for (int k = 60; k >= 1; k--) {
        f = a + k / 2.0 / f;
      }
      r = 1 - Math.exp(-a * a) / Math.sqrt(Math.PI) / f;
    }
    return x < 0 ? -r : r;
  }

  static double[][] map(double[][] x, java.util.function.DoubleUnaryOperator f) {
    double[][] y = new double[x.length][x[0].length];
    for (int t = 0; t < x.length; t++) {
      for (int i = 0; i < x[0].length; i++) {
        y[t][i] = f.applyAsDouble(x[t][i]);
      }
    }
    return y;
  }

  static double[][] rows(double[] table, int[] idx, int h) {
    double[][] y = new double[idx.length][h];
    for (int t = 0; t < idx.length; t++) {
      System.arraycopy(table, idx[t] * h, y[t], 0, h);
    }
    return y;
  }

  /** BertSelfOutput, BertIntermediate and BertOutput after the attention context a, each output dense's dropout at rate {@code hidden}. */
  static double[][] block(Map<String, double[]> w, String p, double[][] h, double[][] a, double eps, RowMasks masks, double hidden) {
    double[][] attn = masks.drop(linear(a, w.get(p + "attention.output.dense.weight"), w.get(p + "attention.output.dense.bias")),
        p + "attention.output.dropout", hidden);
    double[][] h1 = layerNorm(add(attn, h), w.get(p + "attention.output.LayerNorm.weight"), w.get(p + "attention.output.LayerNorm.bias"), eps);
    double[][] mid = map(linear(h1, w.get(p + "intermediate.dense.weight"), w.get(p + "intermediate.dense.bias")), EncoderReferenceTest::gelu);
    double[][] out = masks.drop(linear(mid, w.get(p + "output.dense.weight"), w.get(p + "output.dense.bias")), p + "output.dropout", hidden);
    return layerNorm(add(out, h1), w.get(p + "output.LayerNorm.weight"), w.get(p + "output.LayerNorm.bias"), eps);
  }

  /** A rate of config.json read as transformers' config classes default it. */
  static double rate(ModelConfig c, String field, double fallback) {
    var n = c.raw().path(field);
    return n.isNumber() ? n.asDouble() : fallback;
  }

  static double[] softmax(double[] s) {
    double max = Double.NEGATIVE_INFINITY;
    for (double v : s) {
      max = Math.max(max, v);
    }
    double sum = 0;
    double[] e = new double[s.length];
    for (int i = 0; i < s.length; i++) {
      e[i] = Math.exp(s[i] - max);
      sum += e[i];
    }
    for (int i = 0; i < s.length; i++) {
      e[i] /= sum;
    }
    return e;
  }

  static double dot(double[] a, int ao, double[] b, int bo, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) {
      s += a[ao + i] * b[bo + i];
    }
    return s;
  }

  /** RobertaForSequenceClassification on one unpadded row: BERT's layers (see {@link BertReferenceTest#lastHidden}) at RoBERTa's positions, and its head. */
  static double[] roberta(Map<String, double[]> w, ModelConfig c, int[] ids, RowMasks masks) {
    int pad = c.raw().get("pad_token_id").asInt();
    int[] pos = new int[ids.length];
    for (int i = 0; i < ids.length; i++) {
      pos[i] = pad + 1 + i; // cumsum(ids != pad) + pad for a row without pad ids
    }
    double[][] x = BertReferenceTest.lastHidden(w, c, ids, new int[ids.length], pos, "roberta.", masks);
    double p = rate(c, "classifier_dropout", rate(c, "hidden_dropout_prob", 0.1));
    double[][] first = {masks.dropVector(x[0], "classifier.dropout", p)};
    double[][] dense = map(linear(first, w.get("classifier.dense.weight"), w.get("classifier.dense.bias")), Math::tanh);
    dense = new double[][] {masks.dropVector(dense[0], "classifier.dropout.1", p)}; // the head's one Dropout module, called a second time
    return linear(dense, w.get("classifier.out_proj.weight"), w.get("classifier.out_proj.bias"))[0];
  }

  /** make_log_bucket_position for one distance, in double. */
  static int logBucket(int rel, int bucketSize, int maxPosition) {
    int mid = bucketSize / 2;
    int abs = (rel < mid && rel > -mid) ? mid - 1 : Math.abs(rel);
    double logPos = Math.ceil(Math.log((double) abs / mid) / Math.log((maxPosition - 1) / (double) mid) * (mid - 1)) + mid;
    return abs <= mid ? rel : (int) (logPos * Math.signum(rel));
  }

  /** DebertaV2ForSequenceClassification on one unpadded row. */
  static double[] deberta(Map<String, double[]> w, ModelConfig c, int[] ids, RowMasks masks) {
    var r = c.raw();
    int h = c.hidden();
    int nh = c.heads();
    int hd = h / nh;
    int n = ids.length;
    String e = "deberta.embeddings.";
    double[][] x = rows(w.get(e + "word_embeddings.weight"), ids, h);
    if (r.path("position_biased_input").asBoolean(true)) {
      int[] pos = new int[n];
      for (int i = 0; i < n; i++) {
        pos[i] = i;
      }
      x = add(x, rows(w.get(e + "position_embeddings.weight"), pos, h));
    }
    if (r.path("type_vocab_size").asInt(0) > 0) {
      x = add(x, rows(w.get(e + "token_type_embeddings.weight"), new int[n], h));
    }
    double hidden = rate(c, "hidden_dropout_prob", 0.1);
    double probsP = rate(c, "attention_probs_dropout_prob", 0.1);
    x = masks.drop(layerNorm(x, w.get(e + "LayerNorm.weight"), w.get(e + "LayerNorm.bias"), c.normEps()), e + "dropout", hidden);
    int maxRel = r.path("max_relative_positions").asInt(-1) < 1 ? c.maxPositions() : r.get("max_relative_positions").asInt();
    int buckets = r.path("position_buckets").asInt(-1);
    int span = buckets > 0 ? buckets : maxRel;
    double[] relTable = w.get("deberta.encoder.rel_embeddings.weight");
    double[][] relEmb = new double[2 * span][h];
    for (int i = 0; i < 2 * span; i++) {
      System.arraycopy(relTable, i * h, relEmb[i], 0, h);
    }
    if (r.path("norm_rel_ebd").asText("none").contains("layer_norm")) {
      relEmb = layerNorm(relEmb, w.get("deberta.encoder.LayerNorm.weight"), w.get("deberta.encoder.LayerNorm.bias"), c.normEps());
    }
    int[][] relPos = new int[n][n]; // build_relative_position: q_ids[:, None] − k_ids[None, :], bucketed
    for (int i = 0; i < n; i++) {
      for (int j = 0; j < n; j++) {
        relPos[i][j] = buckets > 0 && maxRel > 0 ? logBucket(i - j, buckets, maxRel) : i - j;
      }
    }
    String types = r.get("pos_att_type").toString();
    boolean c2p = types.contains("c2p");
    boolean p2c = types.contains("p2c");
    boolean share = r.path("share_att_key").asBoolean(false);
    double scale = Math.sqrt(hd * (1.0 + (c2p ? 1 : 0) + (p2c ? 1 : 0)));
    double[][] embeddings = x;
    for (int l = 0; l < c.layers(); l++) {
      String p = "deberta.encoder.layer." + l + ".attention.self.";
      double[][] q = linear(x, w.get(p + "query_proj.weight"), w.get(p + "query_proj.bias"));
      double[][] k = linear(x, w.get(p + "key_proj.weight"), w.get(p + "key_proj.bias"));
      double[][] v = linear(x, w.get(p + "value_proj.weight"), w.get(p + "value_proj.bias"));
      String kp = share ? "key_proj" : "pos_key_proj";
      String qp = share ? "query_proj" : "pos_query_proj";
      double[][] rel = masks.drop(relEmb, p + "pos_dropout", hidden); // this row's own mask (transformers shares one across the batch)
      double[][] posKey = c2p ? linear(rel, w.get(p + kp + ".weight"), w.get(p + kp + ".bias")) : null;
      double[][] posQuery = p2c ? linear(rel, w.get(p + qp + ".weight"), w.get(p + qp + ".bias")) : null;
      double[][] a = new double[n][h];
      for (int head = 0; head < nh; head++) {
        int o = head * hd;
        for (int i = 0; i < n; i++) {
          double[] s = new double[n];
          for (int j = 0; j < n; j++) {
            s[j] = dot(q[i], o, k[j], o, hd) / scale;
            if (c2p) { // c2p_att[i, c2p_pos[i, j]], c2p_pos = clamp(relative_pos + att_span, 0, 2·att_span − 1)
              int idx = Math.max(0, Math.min(2 * span - 1, relPos[i][j] + span));
              s[j] += dot(q[i], o, posKey[idx], o, hd) / scale;
            }
            if (p2c) { // (p2c_att gathered at clamp(−r_pos + att_span))ᵀ: entry [j, i] of the gathered (key, query) matrix
              int idx = Math.max(0, Math.min(2 * span - 1, -relPos[j][i] + span));
              s[j] += dot(k[j], o, posQuery[idx], o, hd) / scale;
            }
          }
          double[] pr = masks.dropProbs(softmax(s), p + "dropout", probsP, nh, head, i);
          for (int j = 0; j < n; j++) {
            for (int d = 0; d < hd; d++) {
              a[i][o + d] += pr[j] * v[j][o + d];
            }
          }
        }
      }
      x = block(w, "deberta.encoder.layer." + l + ".", x, a, c.normEps(), masks, hidden);
      int kernel = r.path("conv_kernel_size").asInt(0);
      if (l == 0 && kernel > 0) { // ConvLayer: LN(residual + act(conv1d(embeddings))), nn.Conv1d with padding (k − 1)/2 and groups
        int groups = r.path("conv_groups").asInt(1);
        int per = h / groups;
        double[] cw = w.get("deberta.encoder.conv.conv.weight"); // (out, in/groups, k)
        double[][] out = new double[n][h];
        for (int t = 0; t < n; t++) {
          for (int o = 0; o < h; o++) {
            double acc = w.get("deberta.encoder.conv.conv.bias")[o];
            int g = o / per;
            for (int ci = 0; ci < per; ci++) {
              for (int j = 0; j < kernel; j++) {
                int src = t + j - (kernel - 1) / 2;
                if (src >= 0 && src < n) {
                  acc += cw[(o * per + ci) * kernel + j] * embeddings[src][g * per + ci];
                }
              }
            }
            out[t][o] = acc;
          }
        }
        out = map(masks.drop(out, "deberta.encoder.conv.dropout", hidden), r.path("conv_act").asText("tanh").equals("gelu") ? EncoderReferenceTest::gelu : Math::tanh);
        x = layerNorm(add(x, out), w.get("deberta.encoder.conv.LayerNorm.weight"), w.get("deberta.encoder.conv.LayerNorm.bias"), c.normEps());
      }
    }
    double[][] context = {masks.dropVector(x[0], "pooler.dropout", rate(c, "pooler_dropout", 0))};
    double[][] pooled = linear(context, w.get("pooler.dense.weight"), w.get("pooler.dense.bias"));
    pooled = map(pooled, r.path("pooler_hidden_act").asText("gelu").equals("tanh") ? Math::tanh : EncoderReferenceTest::gelu);
    pooled = new double[][] {masks.dropVector(pooled[0], "dropout", rate(c, "cls_dropout", hidden))};
    return linear(pooled, w.get("classifier.weight"), w.get("classifier.bias"))[0];
  }
}
