package io.lorafleet.driver.average;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.lorafleet.worker.flat.FlatLayout;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.lora.LoraTarget;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.ModelConfig;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.TinyModelSpec;
import io.lorafleet.worker.train.TrainStep;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class AdapterAveragerTest {
  static LanguageModel base;
  @TempDir Path tmp;

  @BeforeAll
  static void load() {
    TinyModelSpec spec = new TinyModelSpec("llama", 2, 16, 4, 2, 24, 37, 64, false);
    ModelConfig c = ModelConfig.fromJson(spec.configJson(1, 2), "test");
    base = LanguageModel.fromTensors(c, ModelDirectory.randomTensors(c, 1), Device.cpu(), DataType.FLOAT32);
  }

  @AfterAll
  static void close() {
    base.close();
  }

  static AdapterAverager.Source source(String name, LoraConfig cfg, long seed) {
    LoraModel m = LoraModel.create(base, cfg);
    float[] v = m.initialParams(seed);
    Random r = new Random(seed);
    for (int i = 0; i < v.length; i++) {
      v[i] += (float) r.nextGaussian() * 0.1f;
    }
    return new AdapterAverager.Source(name, new AdapterFormat.Loaded(m, v, Map.of()));
  }

  /** s·B·A of one module, in float64. */
  static double[][] delta(LoraModel m, float[] v, String module) {
    LoraTarget t = m.targets().stream().filter(x -> x.module().name().equals(module)).findFirst().orElseThrow();
    FlatLayout.Slot a = m.layout().slot(t.keyA()).orElseThrow();
    FlatLayout.Slot b = m.layout().slot(t.keyB()).orElseThrow();
    int r = t.rank();
    int in = t.module().in();
    int out = t.module().out();
    double[][] d = new double[out][in];
    for (int i = 0; i < out; i++) {
      for (int j = 0; j < in; j++) {
        double acc = 0;
        for (int k = 0; k < r; k++) {
          acc += (double) v[b.offset() + i * r + k] * v[a.offset() + k * in + j];
        }
        d[i][j] = t.scale() * acc;
      }
    }
    return d;
  }

  static final LoraConfig CFG = LoraConfig.of(3, 6, List.of("q_proj", "down_proj"));

  @Test
  void catEqualsTheWeightedMeanOfUpdates() {
    List<AdapterAverager.Source> src = List.of(source("a", CFG, 1), source("b", CFG.withPatterns(Map.of("down_proj", 2), Map.of()), 2), source("c", CFG.withRslora(true), 3));
    double[] w = {1, 2, 1};
    AdapterAverager.Result r = AdapterAverager.combine(base, src, w, true, "cat", 0);
    for (LoraTarget t : r.model().targets()) {
      double[][] got = delta(r.model(), r.values(), t.module().name());
      double[][] want = new double[got.length][got[0].length];
      for (int i = 0; i < src.size(); i++) {
        double[][] d = delta(src.get(i).adapter().model(), src.get(i).adapter().values(), t.module().name());
        for (int p = 0; p < d.length; p++) {
          for (int q = 0; q < d[0].length; q++) {
            want[p][q] += w[i] / 4 * d[p][q];
          }
        }
      }
      for (int p = 0; p < got.length; p++) {
        assertArrayEquals(want[p], got[p], 1e-5, t.module().name());
      }
    }
    assertEquals(3 + 3 + 3, r.model().targets().get(0).rank());
    assertEquals(3 + 2 + 3, r.model().targets().stream().filter(t -> t.module().name().endsWith("down_proj")).findFirst().orElseThrow().rank());
  }

  @Test
  void factorOfIdenticalCheckpointsIsTheIdentity() {
    AdapterAverager.Source a = source("a", CFG, 1);
    AdapterAverager.Result r = AdapterAverager.combine(base, List.of(a, a, a), new double[] {1, 1, 1}, true, "factor", 0);
    assertArrayEquals(a.adapter().values(), r.values(), 1e-7f);
    var ema = AdapterAverager.combine(base, List.of(a, a), AdapterAverager.emaWeights(2, 0.5), true, "factor", 0);
    assertArrayEquals(a.adapter().values(), ema.values(), 1e-7f);
  }

  @Test
  void svdReportsItsErrorExactly() {
    List<AdapterAverager.Source> src = List.of(source("a", CFG, 4), source("b", CFG, 5));
    AdapterAverager.Result full = AdapterAverager.combine(base, src, new double[] {1, 1}, true, "svd", 6);
    assertTrue(full.relativeError() < 1e-6, "rank 6 holds the sum of two rank-3 updates exactly: " + full.relativeError());
    AdapterAverager.Result cut = AdapterAverager.combine(base, src, new double[] {1, 1}, true, "svd", 2);
    AdapterAverager.Result cat = AdapterAverager.combine(base, src, new double[] {1, 1}, true, "cat", 0);
    double err = 0;
    double tot = 0;
    for (LoraTarget t : cat.model().targets()) {
      double[][] exact = delta(cat.model(), cat.values(), t.module().name());
      double[][] approx = delta(cut.model(), cut.values(), t.module().name());
      double[][] same = delta(full.model(), full.values(), t.module().name());
      for (int p = 0; p < exact.length; p++) {
        for (int q = 0; q < exact[0].length; q++) {
          err += Math.pow(exact[p][q] - approx[p][q], 2);
          tot += exact[p][q] * exact[p][q];
          assertEquals(exact[p][q], same[p][q], 1e-5);
        }
      }
    }
    assertTrue(cut.relativeError() > 0.05, "rank 2 of a rank-6 update loses something: " + cut.relativeError());
    assertEquals(Math.sqrt(err / tot), cut.relativeError(), 1e-4);
    assertTrue(cut.metadata().get("lorafleet.combine").contains("\"relative_error\""));
  }

  @Test
  void averagedAdapterLoadsBackAndEvaluates() throws Exception {
    List<AdapterAverager.Source> src = List.of(source("a", CFG, 1), source("b", CFG, 2));
    AdapterAverager.Result r = AdapterAverager.combine(base, src, new double[] {1, 1}, true, "cat", 0);
    AdapterFormat.write(tmp, r.model(), r.values(), r.metadata());
    AdapterFormat.Loaded back = AdapterFormat.read(tmp, base);
    assertArrayEquals(r.values(), back.values());
    var prov = new ObjectMapper().readTree(back.metadata().get("lorafleet.combine"));
    assertEquals("cat", prov.get("mode").asText());
    assertEquals(0.5, prov.get("sources").get(1).get("weight").asDouble(), 1e-12);
    Batch b = Batch.of(new int[][] {{1, 4, 5, 6, 7}}, new int[][] {{-100, -100, 5, 6, 7}});
    double loss = TrainStep.evaluate(back.model(), back.values(), List.of(b)).meanLoss();
    assertTrue(Double.isFinite(loss) && loss > 0);
  }

  @Test
  void refusesAdaptersOfDifferentModuleSets() {
    var e = assertThrows(IllegalArgumentException.class, () -> AdapterAverager.combine(base,
        List.of(source("a", CFG, 1), source("b", LoraConfig.of(3, 6, List.of("q_proj", "up_proj")), 2)), new double[] {1, 1}, true, "cat", 0));
    assertTrue(e.getMessage().contains("b adapts a different module set than a") && e.getMessage().contains("up_proj"), e.getMessage());
    var f = assertThrows(IllegalArgumentException.class, () -> AdapterAverager.combine(base,
        List.of(source("a", CFG.withBaseModel("m1"), 1), source("b", CFG.withBaseModel("m2"), 2)), new double[] {1, 1}, true, "cat", 0));
    assertTrue(f.getMessage().contains("base 'm2'"), f.getMessage());
    var g = assertThrows(IllegalArgumentException.class, () -> AdapterAverager.combine(base,
        List.of(source("a", CFG, 1), source("b", CFG.withPatterns(Map.of("q_proj", 2), Map.of()), 2)), new double[] {1, 1}, true, "factor", 0));
    assertTrue(g.getMessage().contains("factor mode needs equal ranks"), g.getMessage());
  }

  /** The _svd forms: PEFT's arithmetic on each adapter's dense s·B·A (rsLoRA and rank patterns included), then an exact rank-k truncation. */
  @Test
  void svdCombinationsActOnTheDenseUpdatesAndTruncateExactly() throws Exception {
    List<AdapterAverager.Source> src = List.of(source("a", CFG, 11), source("b", CFG.withRslora(true).withPatterns(Map.of("down_proj", 2), Map.of()), 12),
        source("c", CFG.withPatterns(Map.of(), Map.of("q_proj", 9.0)), 13));
    double[] w = {0.6, -0.4, 0.8};
    for (String mode : List.of("ties_svd", "dare_ties_svd", "magnitude_prune_svd", "dare_linear_svd")) {
      AdapterAverager.Result r = AdapterAverager.combine(base, src, w, false, mode, 4, new AdapterAverager.Merge(0.6, "frequency", 5));
      java.util.SplittableRandom rng = new java.util.SplittableRandom(5);
      double errSq = 0;
      double totSq = 0;
      for (LoraTarget t : r.model().targets()) {
        String module = t.module().name();
        List<double[]> dense = new ArrayList<>();
        for (AdapterAverager.Source s : src) {
          double[][] d = delta(s.adapter().model(), s.adapter().values(), module);
          dense.add(java.util.Arrays.stream(d).flatMapToDouble(java.util.Arrays::stream).toArray());
        }
        double[] m = TaskMerge.combine(mode.replace("_svd", ""), dense, w, 0.6, "frequency", rng); // checked against hand values in TaskMergeTest
        double[][] got = delta(r.model(), r.values(), module);
        int out = got.length;
        int in = got[0].length;
        assertEquals(4, t.rank());
        // a rank-4 truncated SVD of m: the residual E = m − got is orthogonal to got's column and row spaces
        double[][] e = new double[out][in];
        for (int p = 0; p < out; p++) {
          for (int q = 0; q < in; q++) {
            e[p][q] = m[p * in + q] - got[p][q];
            errSq += e[p][q] * e[p][q];
            totSq += m[p * in + q] * m[p * in + q];
          }
        }
        double[][] etg = LowRank.multiply(LowRank.transpose(e), got);
        double[][] egt = LowRank.multiply(e, LowRank.transpose(got));
        // relative to ‖E‖·‖got‖: the factors are stored in fp32 (about 6e-8 relative); any other rank-4 factorization is off by O(1)
        double scale = frobenius(e) * frobenius(got);
        for (double[][] prod : List.of(etg, egt)) {
          for (double[] row : prod) {
            for (double x : row) {
              assertEquals(0, x / scale, 1e-5, mode + " " + module);
            }
          }
        }
      }
      assertEquals(Math.sqrt(errSq / totSq), r.relativeError(), 1e-6, mode + ": the reported error is the truncation's");
      // written as a PEFT adapter at scaling 1, it reads back
      Path out = tmp.resolve(mode);
      AdapterFormat.write(out, r.model(), r.values(), r.metadata());
      assertArrayEquals(r.values(), AdapterFormat.read(out, base).values());
    }
  }

  /** PEFT's factor-wise forms: A weighted by sign(w·s)·√|w·s|, B by √|w·s|, each merged on its own; equal ranks required. */
  @Test
  void factorWiseCombinationsAreThoseOfPeft() {
    List<AdapterAverager.Source> src = List.of(source("a", CFG, 21), source("b", CFG.withRslora(true), 22));
    double[] w = {1.0, -0.5};
    AdapterAverager.Result r = AdapterAverager.combine(base, src, w, false, "ties", 0, new AdapterAverager.Merge(0.5, "total", 0));
    for (LoraTarget t : r.model().targets()) {
      List<double[]> as = new ArrayList<>();
      List<double[]> bs = new ArrayList<>();
      double[] wa = new double[2];
      double[] wb = new double[2];
      for (int i = 0; i < 2; i++) {
        LoraModel m = src.get(i).adapter().model();
        LoraTarget tg = m.targets().stream().filter(x -> x.module().name().equals(t.module().name())).findFirst().orElseThrow();
        double ws = w[i] * tg.scale();
        wa[i] = Math.signum(ws) * Math.sqrt(Math.abs(ws));
        wb[i] = Math.sqrt(Math.abs(ws));
        for (var pair : List.of(java.util.Map.entry(tg.keyA(), as), java.util.Map.entry(tg.keyB(), bs))) {
          FlatLayout.Slot s = m.layout().slot(pair.getKey()).orElseThrow();
          double[] v = new double[s.size()];
          for (int k = 0; k < v.length; k++) {
            v[k] = src.get(i).adapter().values()[s.offset() + k];
          }
          pair.getValue().add(v);
        }
      }
      double[] a = TaskMerge.combine("ties", as, wa, 0.5, "total", null);
      double[] b = TaskMerge.combine("ties", bs, wb, 0.5, "total", null);
      FlatLayout.Slot sa = r.model().layout().slot(t.keyA()).orElseThrow();
      FlatLayout.Slot sb = r.model().layout().slot(t.keyB()).orElseThrow();
      for (int k = 0; k < a.length; k++) {
        assertEquals((float) a[k], r.values()[sa.offset() + k], t.module().name());
      }
      for (int k = 0; k < b.length; k++) {
        assertEquals((float) b[k], r.values()[sb.offset() + k], t.module().name());
      }
      assertEquals(1.0, t.scale(), 1e-12);
    }
    var e = assertThrows(IllegalArgumentException.class, () -> AdapterAverager.combine(base, List.of(src.get(0), source("c", CFG.withPatterns(
        Map.of("down_proj", 2), Map.of()), 23)), w, false, "dare_linear", 0, new AdapterAverager.Merge(0.5, "total", 0)));
    assertTrue(e.getMessage().contains("equal ranks") && e.getMessage().contains("dare_linear_svd"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> AdapterAverager.combine(base, src, w, false, "ties", 0, AdapterAverager.Merge.NONE));
    assertTrue(e.getMessage().contains("--density"), e.getMessage());
  }

  static double frobenius(double[][] m) {
    double s = 0;
    for (double[] row : m) {
      for (double x : row) {
        s += x * x;
      }
    }
    return Math.sqrt(s);
  }

  /**
   * What an encoder's adapter trains whole (modules_to_save: the head, and BERT's pooler when listed)
   * is averaged linearly in every mode, and kept: an svd average of adapters that trained the pooler
   * holds the pooler, and adapters that train the head alone (no LoRA target) average too.
   */
  @Test
  void modulesSavedWholeAreAveragedAndKeptInEveryMode() {
    TinyModelSpec spec = new TinyModelSpec("bert", 2, 16, 4, 4, 32, 37, 32, false);
    ModelConfig c = ModelConfig.fromJson(spec.configJson(1, 2), "test");
    try (LanguageModel bert = LanguageModel.fromTensors(c, ModelDirectory.randomTensors(c, 1), Device.cpu(), DataType.FLOAT32)) {
      for (LoraConfig cfg : List.of(LoraConfig.of(2, 4, List.of("query")).withModulesToSave(List.of("pooler", "classifier")),
          LoraConfig.of(2, 4, List.of()).withModulesToSave(List.of("pooler", "classifier")))) {
        List<AdapterAverager.Source> src = new ArrayList<>();
        for (long seed = 1; seed <= 2; seed++) {
          LoraModel m = LoraModel.create(bert, cfg);
          float[] v = m.initialParams(seed);
          Random r = new Random(seed);
          for (int i = 0; i < v.length; i++) {
            v[i] += (float) r.nextGaussian() * 0.1f;
          }
          src.add(new AdapterAverager.Source("s" + seed, new AdapterFormat.Loaded(m, v, Map.of())));
        }
        for (String mode : List.of("svd", "cat", "factor")) {
          AdapterAverager.Result res = AdapterAverager.combine(bert, src, new double[] {1, 3}, true, mode, 0);
          assertEquals(List.of("pooler", "classifier"), res.model().config().modulesToSave(), mode);
          for (String t : List.of("base_model.model.bert.pooler.dense.weight", "base_model.model.classifier.bias")) {
            FlatLayout.Slot out = res.model().layout().slot(t).orElseThrow(() -> new AssertionError(mode + " dropped " + t + ": " + res.model().layout().slots().stream().map(FlatLayout.Slot::key).toList()));
            FlatLayout.Slot in = src.get(0).adapter().model().layout().slot(t).orElseThrow();
            for (int i = 0; i < out.size(); i++) {
              float want = (float) (0.25 * src.get(0).adapter().values()[in.offset() + i] + 0.75 * src.get(1).adapter().values()[in.offset() + i]);
              assertEquals(want, res.values()[out.offset() + i], 1e-6f, mode + " " + t + "[" + i + "] of " + cfg.targetModules());
            }
          }
        }
      }
    }
  }
}
