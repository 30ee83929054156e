package io.lorafleet.worker.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.safetensors.SafetensorsReader;
import io.lorafleet.worker.safetensors.SafetensorsWriter;
import io.lorafleet.worker.safetensors.Tensor;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** What the driver holds: a model's structure from config.json and the safetensors headers, no weights. */
class ModelSkeletonTest {
  @TempDir Path tmp;

  @Test
  void theSkeletonGivesTheSameAdapterAsTheLoadedModelWithoutItsWeights() throws Exception {
    Path dir = tmp.resolve("qwen");
    // Qwen2 has q/k/v biases: with bias lora_only the adapter starts from the base's bias values
    ModelDirectory.initModel(dir, new TinyModelSpec("qwen2", 2, 32, 4, 2, 48, 1, 64, false), List.of("a", "b", "c"), 3);
    LoraConfig cfg = LoraConfig.of(4, 8, List.of("q_proj", "v_proj", "down_proj")).withBias("lora_only");
    ModelSkeleton skeleton = ModelSkeleton.read(dir);
    try (LanguageModel loaded = LanguageModel.load(dir, Device.cpu(), DataType.FLOAT32)) {
      LoraModel onWeights = LoraModel.create(loaded, cfg);
      LoraModel onHeaders = LoraModel.create(skeleton, cfg);
      assertEquals(onWeights.layout().signature(), onHeaders.layout().signature());
      assertArrayEquals(onWeights.initialParams(5), onHeaders.initialParams(5), "the same init, biases included");
      assertEquals(loaded.parameterCount(), skeleton.parameterCount());
      AdapterFormat.write(tmp.resolve("a"), onHeaders, onHeaders.initialParams(5), Map.of());
      assertArrayEquals(onHeaders.initialParams(5), AdapterFormat.read(tmp.resolve("a"), loaded).values(), "written from headers, read on weights");
      var e = assertThrows(IllegalStateException.class, onHeaders::base);
      assertTrue(e.getMessage().contains("no weights loaded"), e.getMessage());
    }
  }

  @Test
  void theHeadersAreCheckedAsLoadingChecksThem() throws Exception {
    Path dir = tmp.resolve("llama");
    ModelDirectory.initModel(dir, new TinyModelSpec("llama", 1, 16, 2, 2, 24, 1, 32, false), List.of("a", "b"), 1);
    SafetensorsReader r = SafetensorsReader.open(dir.resolve(HfDirectory.SAFETENSORS));
    Map<String, Tensor> tensors = new LinkedHashMap<>();
    r.tensors().keySet().forEach(k -> tensors.put(k, r.read(k)));
    tensors.put("model.layers.0.self_attn.q_proj.weight", Tensor.ofFloats(new float[16 * 8], 8, 16));
    Files.delete(dir.resolve(HfDirectory.SAFETENSORS));
    SafetensorsWriter.write(dir.resolve(HfDirectory.SAFETENSORS), tensors, Map.of("format", "pt"));
    var e = assertThrows(IllegalArgumentException.class, () -> ModelSkeleton.read(dir));
    assertTrue(e.getMessage().contains("'model.layers.0.self_attn.q_proj.weight' has shape [8, 16] but config.json implies [16, 16]"), e.getMessage());
    tensors.remove("model.layers.0.self_attn.q_proj.weight");
    Files.delete(dir.resolve(HfDirectory.SAFETENSORS));
    SafetensorsWriter.write(dir.resolve(HfDirectory.SAFETENSORS), tensors, Map.of("format", "pt"));
    e = assertThrows(IllegalArgumentException.class, () -> ModelSkeleton.read(dir));
    assertTrue(e.getMessage().contains("missing tensor 'model.layers.0.self_attn.q_proj.weight'"), e.getMessage());
  }
}
