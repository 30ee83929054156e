package io.lorafleet.worker.lora;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.lorafleet.worker.TinyModels;
import io.lorafleet.worker.flat.FlatLayout;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.TinyModelSpec;
import io.lorafleet.worker.safetensors.SafetensorsReader;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * DoRA with PEFT's semantics (peft/tuners/lora/dora.py, DoraLinearLayer): magnitudes initialized
 * to the row norms of W0 + s·B·A, the forward pass y + (m/n − 1)(y − b) + (m/n)·s·B·A·x with n
 * detached, merge W' = (m/n)(W0 + ΔW), and PEFT's keys and config. The gradients are checked in
 * {@code GradientCheckTest}.
 */
class DoraTest {
  @TempDir Path tmp;

  static TinyModelSpec spec(String arch) {
    return arch.equals("llama") ? TinyModels.LLAMA : arch.equals("qwen2") ? TinyModels.QWEN2 : TinyModels.GPT2;
  }

  /** ‖row o of torch's [out, in] weight + s·B·A‖ in float64, from the HF tensors (GPT-2's Conv1D is [in, out]: transposed first). */
  static double[] rowNorms(LanguageModel m, LoraModel lora, LoraTarget t, float[] p) {
    int in = t.module().in();
    int out = t.module().out();
    float[] w = m.hfTensor(t.module().weightKey()).toFloatArray();
    boolean conv1d = m.config().arch() == io.lorafleet.worker.model.Architecture.GPT2;
    FlatLayout.Slot a = lora.layout().slot(t.keyA()).orElseThrow();
    FlatLayout.Slot b = lora.layout().slot(t.keyB()).orElseThrow();
    double[] n = new double[out];
    for (int o = 0; o < out; o++) {
      double ss = 0;
      for (int i = 0; i < in; i++) {
        double ba = 0;
        for (int k = 0; k < t.rank(); k++) {
          ba += (double) p[b.offset() + o * t.rank() + k] * p[a.offset() + k * in + i];
        }
        double x = (conv1d ? w[i * out + o] : w[o * in + i]) + t.scale() * ba;
        ss += x * x;
      }
      n[o] = Math.sqrt(ss);
    }
    return n;
  }

  @ParameterizedTest
  @ValueSource(strings = {"llama", "gpt2"})
  void magnitudesStartAtTheRowNormsOfTheInitialWeights(String arch) {
    try (LanguageModel m = TinyModels.model(spec(arch), 3, DataType.FLOAT32)) {
      for (String init : List.of("true", "false")) {
        LoraModel lora = LoraModel.create(m, LoraConfig.of(4, 8, List.of("all-linear")).withMethod(DoraMethod.INSTANCE).withInit(init));
        float[] p = lora.initialParams(5);
        for (LoraTarget t : lora.targets()) {
          double[] want = rowNorms(m, lora, t, p);
          FlatLayout.Slot s = lora.layout().slot(t.keyM()).orElseThrow();
          for (int o = 0; o < want.length; o++) {
            assertEquals(want[o], p[s.offset() + o], 1e-5 * want[o], init + " " + t.keyM() + "[" + o + "]");
          }
        }
      }
    }
  }

  @Test
  void atInitializationTheModelIsTheBase() {
    try (LanguageModel m = TinyModels.model(TinyModels.QWEN2, 3, DataType.FLOAT32)) {
      LoraModel lora = LoraModel.create(m, LoraConfig.of(4, 8, List.of("all-linear")).withMethod(DoraMethod.INSTANCE).withBias("lora_only"));
      float[] base = MergeAndAdapterTest.logits(m, lora, null);
      float[] dora = MergeAndAdapterTest.logits(m, lora, lora.initialParams(2));
      assertArrayEquals(base, dora, 2e-5f, "B = 0 and m = ‖W0‖: every scale m/n is 1");
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"llama", "qwen2", "gpt2"})
  void mergedForwardEqualsUnmergedAndUnmergeRestores(String arch) {
    try (LanguageModel m = TinyModels.model(spec(arch), 3, DataType.FLOAT32)) {
      LoraModel lora = LoraModel.create(m, LoraConfig.of(4, 8, List.of("all-linear")).withMethod(DoraMethod.INSTANCE).withBias("lora_only").withInit("false"));
      MergeAndAdapterTest.assertMergeIsExact(m, lora, MergeAndAdapterTest.trained(lora, 1), 1e-5f); // magnitudes moved too
    }
  }

  @Test
  void adaptersCarryPeftsKeysAndConfigAndRoundTripByteForByte() throws Exception {
    try (LanguageModel m = TinyModels.model(TinyModels.LLAMA, 3, DataType.FLOAT32)) {
      LoraModel lora = LoraModel.create(m, LoraConfig.of(4, 8, List.of("q_proj", "v_proj")).withMethod(DoraMethod.INSTANCE));
      float[] p = MergeAndAdapterTest.trained(lora, 2);
      Path a = tmp.resolve("a");
      AdapterFormat.write(a, lora, p, Map.of());
      var conf = new ObjectMapper().readTree(a.resolve(AdapterFormat.CONFIG).toFile());
      assertTrue(conf.get("use_dora").asBoolean(), conf.toString());
      var tensors = SafetensorsReader.open(a.resolve(AdapterFormat.WEIGHTS)).tensors();
      var mag = tensors.get("base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector");
      assertTrue(mag != null, tensors.keySet().toString());
      assertArrayEquals(new long[] {m.linearSpec("model.layers.0.self_attn.q_proj").out()}, mag.shape());
      MergeAndAdapterTest.assertRoundTripsByteForByte(a, m, p);
    }
  }

  @Test
  void aSkeletonLeavesTheMagnitudesToTheWorkers() throws Exception {
    Path dir = tmp.resolve("model");
    io.lorafleet.worker.model.ModelDirectory.initModel(dir, new TinyModelSpec("llama", 2, 32, 4, 2, 48, 1, 64, false), List.of("a", "b", "c"), 3);
    try (LanguageModel m = LanguageModel.load(dir, ai.djl.Device.cpu(), DataType.FLOAT32)) {
      var skeleton = io.lorafleet.worker.model.ModelSkeleton.read(dir);
      LoraConfig cfg = LoraConfig.of(4, 8, List.of("q_proj")).withMethod(DoraMethod.INSTANCE);
      float[] noWeights = LoraModel.create(skeleton, cfg).initialParams(9);
      LoraModel loaded = LoraModel.create(m, cfg);
      assertTrue(loaded.needsBaseValues(noWeights));
      float[] filled = loaded.withBaseValues(noWeights);
      assertArrayEquals(loaded.initialParams(9), filled, 0f, "the workers' magnitudes are the ones a loaded model starts from");
      assertTrue(!loaded.needsBaseValues(filled));
    }
  }
}
