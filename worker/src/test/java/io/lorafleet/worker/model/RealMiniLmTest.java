package io.lorafleet.worker.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtSession;
import io.lorafleet.worker.tokenizer.Tokenizer;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A real pretrained BERT: all-MiniLM-L6-v2's weights, converted from the ONNX graph Maven Central
 * ships into the directory sentence-transformers saves (no "bert." prefix, no pooler), loaded by
 * lorafleet as model_type bert. Its last hidden states, and the sentence embeddings
 * sentence-transformers makes of them (mean over the row's tokens), must equal what onnxruntime
 * computes from the original graph, an implementation independent of lorafleet's, for single texts
 * and for a text pair (token types 0 and 1), in one right-padded batch.
 */
class RealMiniLmTest {
  @TempDir static Path tmp;
  static byte[] onnx;
  static Path dir;

  @BeforeAll
  static void convert() throws Exception {
    onnx = OnnxBert.onnx();
    dir = tmp.resolve("all-MiniLM-L6-v2");
    OnnxBert.writeHfDirectory(onnx, dir);
  }

  @Test
  void lastHiddenStatesAndSentenceEmbeddingsEqualOnnxRuntimesOnTheRealModel() throws Exception {
    Tokenizer tok = Tokenizer.load(dir);
    List<Tokenizer.Classified> rows = List.of(tok.encodeForClassification("A man is playing a guitar on the stage.", Optional.empty()),
        tok.encodeForClassification("The quick brown fox jumps over the lazy dog", Optional.empty()),
        tok.encodeForClassification("How do I reset my password?", Optional.of("Click 'forgot password' on the sign-in page.")),
        tok.encodeForClassification("Hello", Optional.empty()));
    assertTrue(java.util.Arrays.stream(rows.get(2).types()).anyMatch(t -> t == 1), "the pair's second text has token type 1");
    int[][] ids = rows.stream().map(Tokenizer.Classified::ids).toArray(int[][]::new);
    int[][] types = rows.stream().map(Tokenizer.Classified::types).toArray(int[][]::new);
    Batch batch = Batch.classification(ids, types, new float[ids.length]);
    float[] ours;
    int t = batch.seqLen();
    int h = 384;
    try (LanguageModel m = LanguageModel.load(dir, Device.cpu(), DataType.FLOAT32); NDManager s = m.manager().newSubManager()) {
      assertEquals(Architecture.BERT, m.config().arch());
      ours = m.lastHiddenState(ForwardContext.inference(s, LinearDelta.NONE), batch).toFloatArray();
    }
    try (OrtEnvironment env = OrtEnvironment.getEnvironment(); OrtSession session = env.createSession(onnx, new OrtSession.SessionOptions())) {
      double worst = 0;
      double worstEmbedding = 0;
      for (int r = 0; r < ids.length; r++) {
        int n = ids[r].length;
        long[][] in = {java.util.Arrays.stream(ids[r]).asLongStream().toArray()};
        long[][] mask = {new long[n]};
        java.util.Arrays.fill(mask[0], 1);
        long[][] tt = {java.util.Arrays.stream(types[r]).asLongStream().toArray()};
        float[][][] want;
        try (OnnxTensor a = OnnxTensor.createTensor(env, in); OnnxTensor b = OnnxTensor.createTensor(env, mask); OnnxTensor c = OnnxTensor.createTensor(env, tt);
            OrtSession.Result res = session.run(Map.of("input_ids", a, "attention_mask", b, "token_type_ids", c))) {
          want = (float[][][]) res.get(0).getValue();
        }
        double[] meanWant = new double[h];
        double[] meanGot = new double[h];
        for (int i = 0; i < n; i++) {
          for (int k = 0; k < h; k++) {
            float got = ours[(r * t + i) * h + k];
            worst = Math.max(worst, Math.abs(got - want[0][i][k]));
            meanWant[k] += want[0][i][k] / (double) n;
            meanGot[k] += got / (double) n;
          }
        }
        for (int k = 0; k < h; k++) {
          worstEmbedding = Math.max(worstEmbedding, Math.abs(meanGot[k] - meanWant[k]));
        }
        assertTrue(cosine(meanGot, meanWant) > 1 - 1e-9, "row " + r + ": sentence embeddings' cosine " + cosine(meanGot, meanWant));
      }
      // two float32 implementations of 6 layers, summing in different orders (3e-6 apart here); hidden states are O(1)
      assertTrue(worst < 5e-5, "largest |lorafleet − onnxruntime| over every token's hidden state: " + worst);
      assertTrue(worstEmbedding < 2e-5, "largest difference in the mean-pooled sentence embeddings: " + worstEmbedding);
    }
  }

  /** sentence-transformers' older layout: the model in 0_Transformer/, beside modules.json; the directory loads as its model. */
  @Test
  void theOlderSentenceTransformersLayoutLoadsFromItsTransformerModule() throws Exception {
    Path st = tmp.resolve("st-layout");
    java.nio.file.Files.createDirectories(st);
    java.nio.file.Files.writeString(st.resolve("modules.json"), "[{\"idx\": 0, \"name\": \"0\", \"path\": \"0_Transformer\", "
        + "\"type\": \"sentence_transformers.models.Transformer\"}]");
    java.nio.file.Files.createSymbolicLink(st.resolve(HfDirectory.SENTENCE_TRANSFORMERS_MODULE), dir);
    assertEquals(384, ModelSkeleton.read(st).config().hidden());
    assertEquals(Tokenizer.load(dir).encode("hello world").length, Tokenizer.load(st).encode("hello world").length);
    try (LanguageModel m = LanguageModel.load(st, Device.cpu(), DataType.FLOAT32)) {
      assertEquals(Architecture.BERT, m.config().arch());
    }
  }

  static double cosine(double[] a, double[] b) {
    double ab = 0;
    double aa = 0;
    double bb = 0;
    for (int i = 0; i < a.length; i++) {
      ab += a[i] * b[i];
      aa += a[i] * a[i];
      bb += b[i] * b[i];
    }
    return ab / Math.sqrt(aa * bb);
  }
}
