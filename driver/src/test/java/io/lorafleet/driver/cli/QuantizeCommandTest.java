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
import io.lorafleet.worker.model.CausalLM;
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

  static float[] logits(CausalLM m, LoraModel lora, float[] p) {
    try (NDManager s = m.manager().newSubManager()) {
      var ctx = p == null ? io.lorafleet.worker.model.ForwardContext.inference(s, io.lorafleet.worker.model.LinearDelta.NONE)
          : lora.bind(s, p, false, -1).context();
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
    try (CausalLM base = CausalLM.load(q, Device.cpu(), DataType.FLOAT32)) {
      unmerged = logits(base, LoraModel.create(base, onSkeleton.config()), p);
    }
    for (String dtype : new String[] {"fp32", "fp16"}) {
      Path merged = tmp.resolve("merged-" + dtype);
      assertEquals(0, Main.execute("merge", "--model", q.toString(), "--adapter", adapter.toString(), "--out", merged.toString(), "--dtype", dtype));
      JsonNode mc = new ObjectMapper().readTree(merged.resolve("config.json").toFile());
      assertFalse(mc.has("quantization_config"), "the merged model is full precision");
      assertEquals(dtype.equals("fp32") ? "float32" : "float16", mc.get("torch_dtype").asText());
      SafetensorsReader sr = SafetensorsReader.open(merged.resolve(CausalLM.SAFETENSORS));
      assertEquals(dtype.equals("fp32") ? DType.F32 : DType.F16, sr.info("model.layers.0.self_attn.q_proj.weight").orElseThrow().dtype());
      try (CausalLM m = CausalLM.load(merged, Device.cpu(), DataType.FLOAT32)) {
        float[] got = logits(m, null, null);
        for (int i = 0; i < got.length; i++) {
          assertEquals(unmerged[i], got[i], dtype.equals("fp32") ? 1e-5 : 2e-2, dtype + " logit " + i);
        }
      }
    }
    // --quantize at load on the full-precision model merges onto the same dequantized weights
    Path merged = tmp.resolve("merged-at-load");
    assertEquals(0, Main.execute("merge", "--model", model.toString(), "--quantize", "nf4", "--adapter", adapter.toString(), "--out", merged.toString()));
    try (CausalLM m = CausalLM.load(merged, Device.cpu(), DataType.FLOAT32)) {
      float[] got = logits(m, null, null);
      for (int i = 0; i < got.length; i++) {
        assertEquals(unmerged[i], got[i], 1e-5, "logit " + i);
      }
    }
    assertEquals(0, Main.execute("generate", "--model", q.toString(), "--adapter", adapter.toString(), "--prompt", "a b", "--max-new-tokens", "3"));
    assertEquals(0, Main.execute("plan", "--model", model.toString(), "--seq-len", "32", "--quantize", "nf4", "--gradient-checkpointing"));
  }
}
