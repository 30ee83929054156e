package io.lorafleet.worker.quant;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.lorafleet.worker.QuantFixtures;
import io.lorafleet.worker.TinyModels;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.model.Dropout;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.ForwardContext;
import io.lorafleet.worker.model.HfDirectory;
import io.lorafleet.worker.model.LinearDelta;
import io.lorafleet.worker.model.LinearSpec;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.ModelSkeleton;
import io.lorafleet.worker.model.ParamSpec;
import io.lorafleet.worker.model.QuantizeModel;
import io.lorafleet.worker.model.TinyModelSpec;
import io.lorafleet.worker.safetensors.DType;
import io.lorafleet.worker.safetensors.SafetensorsReader;
import io.lorafleet.worker.safetensors.Tensor;
import io.lorafleet.worker.train.FullModel;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Quantized bases end to end: lorafleet quantize, reading bitsandbytes and GPTQ checkpoints, the forward pass over them, and merging. */
class QuantizedModelTest {
  @TempDir Path tmp;

  static final Batch BATCH = Batch.of(new int[][] {{1, 4, 8, 15, 16, 23, 36}, {1, 9, 3, 2, 0, 0, 0}},
      new int[][] {{-100, -100, 8, 15, 16, 23, 36}, {-100, 9, 3, 2, -100, -100, -100}});

  static TinyModelSpec spec(String arch) {
    return arch.equals("gpt2") ? TinyModels.GPT2 : TinyModels.LLAMA;
  }

  Path fullPrecision(TinyModelSpec spec, long seed) throws Exception {
    Path dir = tmp.resolve("fp-" + spec.modelType() + "-" + seed);
    ModelDirectory.write(dir, spec.configJson(1, 2), TinyModels.tensors(spec, seed));
    return dir;
  }

  static float[] logits(LanguageModel m, LoraModel lora, float[] p) {
    try (NDManager s = m.manager().newSubManager()) {
      ForwardContext ctx = p == null ? ForwardContext.inference(s, LinearDelta.NONE) : lora.bind(s, p, false, Dropout.OFF).context();
      return m.forward(ctx, BATCH).toFloatArray();
    }
  }

  /** The full-precision model whose weights are {@code q}'s dequantized ones. */
  static LanguageModel dequantizedTwin(LanguageModel q, DataType dtype) {
    Map<String, Tensor> t = new LinkedHashMap<>();
    for (ParamSpec p : q.params()) {
      t.put(p.name(), q.hfTensor(p.name()));
    }
    return LanguageModel.fromTensors(q.config(), t, Device.cpu(), dtype);
  }

  static void assertClose(float[] want, float[] got, double tol, String what) {
    assertEquals(want.length, got.length);
    for (int i = 0; i < want.length; i++) {
      assertEquals(want[i], got[i], tol, what + " " + i);
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"llama", "gpt2"})
  void quantizeWritesWhatLoadingQuantizesAndReadsBack(String arch) throws Exception {
    TinyModelSpec spec = spec(arch);
    Path src = fullPrecision(spec, 3);
    Path out = tmp.resolve("nf4-" + arch);
    QuantizeModel.Written w = QuantizeModel.write(src, out, true);
    assertEquals(4 * spec.layers() + (arch.equals("gpt2") ? 0 : 3 * spec.layers()), w.quantizedTensors());
    JsonNode q = new ObjectMapper().readTree(out.resolve("config.json").toFile()).get("quantization_config");
    assertEquals("bitsandbytes", q.get("quant_method").asText());
    assertTrue(q.get("load_in_4bit").asBoolean() && q.get("bnb_4bit_use_double_quant").asBoolean());
    assertEquals("nf4", q.get("bnb_4bit_quant_type").asText());
    assertEquals("uint8", q.get("bnb_4bit_quant_storage").asText());
    SafetensorsReader r = SafetensorsReader.open(out.resolve(HfDirectory.SAFETENSORS));
    ModelSkeleton skeleton = ModelSkeleton.read(out); // the driver's view accepts it
    Map<String, Tensor> source = TinyModels.tensors(spec, 3);
    try (LanguageModel stored = LanguageModel.load(out, Device.cpu(), DataType.FLOAT32);
        LanguageModel atLoad = LanguageModel.load(src, Device.cpu(), DataType.FLOAT32, Quantization.NF4)) {
      assertEquals("nf4-dq", stored.quantization());
      assertEquals("nf4-dq", atLoad.quantization());
      for (LinearSpec l : stored.linears()) {
        ParamSpec p = stored.paramSpec(l.weightKey()).orElseThrow();
        float[] a = stored.hfTensor(p.name()).toFloatArray();
        assertArrayEquals(a, atLoad.hfTensor(p.name()).toFloatArray(), p.name());
        if (!l.quantizable()) {
          assertArrayEquals(source.get(p.name()).toFloatArray(), a, "lm_head stays full precision");
          continue;
        }
        assertEquals(DType.U8, r.info(p.name()).orElseThrow().dtype());
        float[] hf = source.get(p.name()).toFloatArray();
        float[] outIn = p.transposed() ? hf : LanguageModel.transpose(hf, l.in(), l.out());
        float[] want = Nf4Tensor.quantize(outIn, new long[] {l.out(), l.in()}, true, "float32").dequantize();
        assertArrayEquals(p.transposed() ? want : LanguageModel.transpose(want, l.out(), l.in()), a, p.name());
      }
      assertEquals(skeleton.params().size(), stored.params().size());
      assertArrayEquals(source.get(stored.params().get(0).name()).toFloatArray(), stored.hfTensor(stored.params().get(0).name()).toFloatArray(),
          "embeddings stay full precision");
      assertArrayEquals(logits(stored, null, null), logits(atLoad, null, null));
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"llama-nf4", "gpt2-nf4", "llama-nf4-plain", "llama-gptq", "gpt2-gptq-v2", "llama-gptq-desc-act"})
  void logitsEqualTheFp32ModelOfTheDequantizedWeights(String which) throws Exception {
    TinyModelSpec spec = spec(which.substring(0, which.indexOf('-')));
    Path dir;
    if (which.contains("gptq")) {
      dir = QuantFixtures.gptq(tmp.resolve(which), spec, 4, which.contains("desc-act") ? 8 : -1, which.contains("desc-act"), which.contains("v2"));
    } else {
      dir = tmp.resolve(which);
      QuantizeModel.write(fullPrecision(spec, 4), dir, !which.contains("plain"));
    }
    try (LanguageModel q = LanguageModel.load(dir, Device.cpu(), DataType.FLOAT32); LanguageModel twin = dequantizedTwin(q, DataType.FLOAT32)) {
      assertTrue(q.isQuantized());
      LoraModel lora = LoraModel.create(q, LoraConfig.of(4, 8, List.of("all-linear")));
      LoraModel twinLora = LoraModel.create(twin, LoraConfig.of(4, 8, List.of("all-linear")));
      float[] p = trained(lora, 2);
      assertClose(logits(twin, null, null), logits(q, null, null), 1e-5, "base logit");
      assertClose(logits(twin, twinLora, p), logits(q, lora, p), 1e-5, "LoRA logit");
      // merging onto a quantized base: dequantize, then W + s·B·A; equals the unmerged adapter over the quantized base
      float[] unmerged = logits(q, lora, p);
      q.dequantize();
      assertTrue(!q.isQuantized());
      lora.merge(p);
      assertClose(unmerged, logits(q, null, null), 1e-5, "merged logit");
    }
  }

  static float[] trained(LoraModel lora, long seed) {
    return TinyModels.trained(lora, seed);
  }

  @Test
  void misuseIsRefusedByName() throws Exception {
    Path src = fullPrecision(TinyModels.LLAMA, 5);
    Path q = tmp.resolve("q");
    QuantizeModel.write(src, q, false);
    var e = assertThrows(IllegalArgumentException.class, () -> LanguageModel.load(q, Device.cpu(), DataType.FLOAT32, Quantization.NF4));
    assertTrue(e.getMessage().contains("stored quantized") && e.getMessage().contains("--quantize"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> QuantizeModel.write(q, tmp.resolve("again"), true));
    assertTrue(e.getMessage().contains("quantization_config"), e.getMessage());
    try (LanguageModel m = LanguageModel.load(q, Device.cpu(), DataType.FLOAT32)) {
      assertEquals("nf4", m.quantization());
      e = assertThrows(IllegalArgumentException.class, () -> new FullModel(m));
      assertTrue(e.getMessage().contains("full fine-tuning") && e.getMessage().contains("nf4"), e.getMessage());
      var s = assertThrows(IllegalStateException.class, () -> m.weight("model.layers.0.self_attn.q_proj.weight"));
      assertTrue(s.getMessage().contains("q_proj") && s.getMessage().contains("dequantize"), s.getMessage());
      LanguageModel.Bytes b = m.bytes();
      assertEquals(b.params(), m.parameterCount());
    }
  }
}
