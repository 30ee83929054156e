package io.lorafleet.driver.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.model.Dropout;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.HfDirectory;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.ModelSkeleton;
import io.lorafleet.worker.model.TinyModelSpec;
import io.lorafleet.worker.safetensors.DType;
import io.lorafleet.worker.safetensors.SafetensorsReader;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** lorafleet quantize, then merge and generate over the quantized base, through the CLI. */
class QuantizeCommandTest {
  @TempDir Path tmp;

  static float[] logits(LanguageModel m, LoraModel lora, float[] p) {
    try (NDManager s = m.manager().newSubManager()) {
      var ctx = p == null ? io.lorafleet.worker.model.ForwardContext.inference(s, io.lorafleet.worker.model.LinearDelta.NONE)
          : lora.bind(s, p, false, Dropout.OFF).context();
      return m.forward(ctx, Batch.of(new int[][] {{1, 3, 4, 5, 6}}, new int[][] {{-100, 3, 4, 5, 6}})).toFloatArray();
    }
  }

  @Test
  void quantizeThenMergeExportsTheDequantizedBasePlusTheAdapter() throws Exception {
    Path model = tmp.resolve("m");
    ModelDirectory.initModel(model, new TinyModelSpec("llama", 2, 64, 4, 2, 96, 1, 64, false), List.of("a", "b", "c", "d", "e", "f"), 3);
    Path q = tmp.resolve("q");
    assertEquals(0, Main.execute("quantize", "--model", model.toString(), "--out", q.toString()));
    JsonNode cfg = new ObjectMapper().readTree(q.resolve("config.json").toFile());
    assertTrue(cfg.get("quantization_config").get("bnb_4bit_use_double_quant").asBoolean());
    assertTrue(q.resolve("tokenizer.json").toFile().isFile());
    assertEquals(2, Main.execute("quantize", "--model", model.toString(), "--out", q.toString()), "an output that holds files is refused");

    // an adapter trained over the quantized base is an ordinary PEFT adapter
    LoraModel onSkeleton = LoraModel.create(ModelSkeleton.read(q), LoraConfig.of(4, 8, List.of("all-linear")));
    float[] p = onSkeleton.initialParams(2);
    Random r = new Random(2);
    for (int i = 0; i < p.length; i++) {
      p[i] += (float) (r.nextGaussian() * 0.1);
    }
    Path adapter = tmp.resolve("adapter");
    AdapterFormat.write(adapter, onSkeleton, p, Map.of());
    float[] unmerged;
    try (LanguageModel base = LanguageModel.load(q, Device.cpu(), DataType.FLOAT32)) {
      unmerged = logits(base, LoraModel.create(base, onSkeleton.config()), p);
    }
    for (String dtype : new String[] {"fp32", "fp16"}) {
      Path merged = tmp.resolve("merged-" + dtype);
      assertEquals(0, Main.execute("merge", "--model", q.toString(), "--adapter", adapter.toString(), "--out", merged.toString(), "--dtype", dtype));
      JsonNode mc = new ObjectMapper().readTree(merged.resolve("config.json").toFile());
      assertFalse(mc.has("quantization_config"), "the merged model is full precision");
      assertEquals(dtype.equals("fp32") ? "float32" : "float16", mc.get("torch_dtype").asText());
      SafetensorsReader sr = SafetensorsReader.open(merged.resolve(HfDirectory.SAFETENSORS));
      assertEquals(dtype.equals("fp32") ? DType.F32 : DType.F16, sr.info("model.layers.0.self_attn.q_proj.weight").orElseThrow().dtype());
      try (LanguageModel m = LanguageModel.load(merged, Device.cpu(), DataType.FLOAT32)) {
        float[] got = logits(m, null, null);
        for (int i = 0; i < got.length; i++) {
          assertEquals(unmerged[i], got[i], dtype.equals("fp32") ? 1e-5 : 2e-2, dtype + " logit " + i);
        }
      }
    }
    // --quantize at load on the full-precision model merges onto the same dequantized weights
    Path merged = tmp.resolve("merged-at-load");
    assertEquals(0, Main.execute("merge", "--model", model.toString(), "--quantize", "nf4", "--adapter", adapter.toString(), "--out", merged.toString()));
    try (LanguageModel m = LanguageModel.load(merged, Device.cpu(), DataType.FLOAT32)) {
      float[] got = logits(m, null, null);
      for (int i = 0; i < got.length; i++) {
        assertEquals(unmerged[i], got[i], 1e-5, "logit " + i);
      }
    }
    assertEquals(0, Main.execute("generate", "--model", q.toString(), "--adapter", adapter.toString(), "--prompt", "a b", "--max-new-tokens", "3"));
    assertEquals(0, Main.execute("plan", "--model", model.toString(), "--seq-len", "32", "--quantize", "nf4", "--gradient-checkpointing"));
  }

  @Test
  void bf16MergeIsShardedPastMaxShardSizeAndReadsBack() throws Exception {
    Path model = tmp.resolve("m");
    ModelDirectory.initModel(model, new TinyModelSpec("llama", 2, 64, 4, 2, 96, 1, 64, false), List.of("a", "b", "c", "d", "e", "f"), 4);
    LoraModel lora = LoraModel.create(ModelSkeleton.read(model), LoraConfig.of(4, 8, List.of("q_proj", "v_proj")));
    float[] p = lora.initialParams(3);
    for (int i = 0; i < p.length; i++) {
      p[i] += 0.01f * (i % 7);
    }
    Path adapter = tmp.resolve("adapter");
    AdapterFormat.write(adapter, lora, p, Map.of());
    Path fp32 = tmp.resolve("fp32");
    Path bf16 = tmp.resolve("bf16");
    assertEquals(0, Main.execute("merge", "--model", model.toString(), "--adapter", adapter.toString(), "--out", fp32.toString()));
    assertEquals(0, Main.execute("merge", "--model", model.toString(), "--adapter", adapter.toString(), "--out", bf16.toString(), "--dtype", "bf16",
        "--max-shard-size", "20KB"));
    assertTrue(fp32.resolve(HfDirectory.SAFETENSORS).toFile().isFile(), "under the default 5GB: one file");
    JsonNode index = new ObjectMapper().readTree(bf16.resolve(HfDirectory.SAFETENSORS_INDEX).toFile());
    java.util.TreeSet<String> shards = new java.util.TreeSet<>();
    index.get("weight_map").fields().forEachRemaining(e -> shards.add(e.getValue().asText()));
    assertTrue(shards.size() > 1 && shards.first().equals(String.format("model-00001-of-%05d.safetensors", shards.size())), shards.toString());
    long total = 0;
    for (String f : shards) {
      SafetensorsReader r = SafetensorsReader.open(bf16.resolve(f));
      for (var t : r.tensors().values()) {
        assertEquals(DType.BF16, t.dtype());
        total += r.read(t.name()).data().length;
      }
    }
    assertEquals(total, index.get("metadata").get("total_size").asLong());
    assertEquals("bfloat16", new ObjectMapper().readTree(bf16.resolve("config.json").toFile()).get("torch_dtype").asText());
    try (LanguageModel a = LanguageModel.load(fp32, Device.cpu(), DataType.FLOAT32); LanguageModel b = LanguageModel.load(bf16, Device.cpu(), DataType.FLOAT32)) {
      for (var spec : a.params()) {
        float[] want = a.hfTensor(spec.name()).toFloatArray();
        float[] got = b.hfTensor(spec.name()).toFloatArray();
        for (int i = 0; i < want.length; i++) {
          float rounded = Float.intBitsToFloat((io.lorafleet.worker.safetensors.Half.floatToBf16(want[i]) & 0xffff) << 16);
          assertEquals(rounded, got[i], spec.name() + "[" + i + "] is the bf16 rounding of the fp32 merge");
        }
      }
    }
    assertEquals(2, Main.execute("merge", "--model", model.toString(), "--adapter", adapter.toString(), "--out", tmp.resolve("x").toString(),
        "--max-shard-size", "lots"));
  }
}
