package io.lorafleet.worker.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.worker.TinyModels;
import io.lorafleet.worker.safetensors.DType;
import io.lorafleet.worker.safetensors.Half;
import io.lorafleet.worker.safetensors.SafetensorsWriter;
import io.lorafleet.worker.safetensors.Tensor;
import io.lorafleet.worker.tokenizer.Tokenizer;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class HfDirectoryTest {
  @TempDir Path tmp;

  static Tensor bf16(Tensor t) {
    float[] v = t.toFloatArray();
    ByteBuffer b = ByteBuffer.allocate(v.length * 2).order(ByteOrder.LITTLE_ENDIAN);
    for (float x : v) {
      b.putShort(Half.floatToBf16(x));
    }
    return new Tensor(DType.BF16, t.shape(), b.array());
  }

  static float[] logits(LanguageModel m) {
    try (NDManager s = m.manager().newSubManager()) {
      return m.forward(ForwardContext.inference(s, LinearDelta.NONE), Batch.of(new int[][] {{1, 2, 3, 4}}, new int[][] {{0, 0, 0, 0}})).toFloatArray();
    }
  }

  @Test
  void shardedBf16CheckpointLoadsAndMatchesInMemoryModel() throws Exception {
    Map<String, Tensor> tensors = TinyModels.tensors(TinyModels.LLAMA, 5);
    Map<String, Tensor> rounded = new LinkedHashMap<>();
    tensors.forEach((k, t) -> rounded.put(k, bf16(t)));
    Map<String, Tensor> shard1 = new LinkedHashMap<>();
    Map<String, Tensor> shard2 = new LinkedHashMap<>();
    ObjectNode index = new ObjectMapper().createObjectNode();
    ObjectNode map = index.putObject("weight_map");
    int i = 0;
    for (var e : rounded.entrySet()) {
      String file = (i++ % 2 == 0) ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
      (file.contains("00001-") ? shard1 : shard2).put(e.getKey(), e.getValue());
      map.put(e.getKey(), file);
    }
    SafetensorsWriter.write(tmp.resolve("model-00001-of-00002.safetensors"), shard1, Map.of("format", "pt"));
    SafetensorsWriter.write(tmp.resolve("model-00002-of-00002.safetensors"), shard2, Map.of("format", "pt"));
    Files.writeString(tmp.resolve(HfDirectory.SAFETENSORS_INDEX), index.toString());
    Files.writeString(tmp.resolve("config.json"), TinyModels.LLAMA.configJson(1, 2).toString());
    try (LanguageModel loaded = LanguageModel.load(tmp, Device.cpu(), DataType.FLOAT32);
        LanguageModel mem = LanguageModel.fromTensors(TinyModels.config(TinyModels.LLAMA), rounded, Device.cpu(), DataType.FLOAT32)) {
      assertArrayEquals(logits(mem), logits(loaded));
    }
    // an index that points outside the model directory is refused, naming the tensor and the path
    String first = map.fieldNames().next();
    for (String outside : new String[] {"../model-00001-of-00002.safetensors", "/etc/hostname", "sub/../../x.safetensors"}) {
      map.put(first, outside);
      Files.writeString(tmp.resolve(HfDirectory.SAFETENSORS_INDEX), index.toString());
      var e = assertThrows(IllegalArgumentException.class, () -> LanguageModel.load(tmp, Device.cpu(), DataType.FLOAT32));
      assertTrue(e.getMessage().contains("'" + first + "' is mapped to \"" + outside + "\"") && e.getMessage().contains("a file in the model directory"),
          e.getMessage());
    }
  }

  @Test
  void gpt2BareKeysAndExportRoundTrip() throws Exception {
    Map<String, Tensor> bare = new LinkedHashMap<>();
    TinyModels.tensors(TinyModels.GPT2, 3).forEach((k, t) -> bare.put(k.replaceFirst("^transformer\\.", ""), t));
    Path dir = tmp.resolve("gpt2");
    ModelDirectory.write(dir, TinyModels.GPT2.configJson(1, 2), bare);
    try (LanguageModel m = LanguageModel.load(dir, Device.cpu(), DataType.FLOAT32)) {
      Path out = tmp.resolve("export");
      ModelDirectory.export(out, m, dir);
      try (LanguageModel again = LanguageModel.load(out, Device.cpu(), DataType.FLOAT32)) {
        assertArrayEquals(logits(m), logits(again));
      }
    }
  }

  @Test
  void clearErrorsForUnsupportedTypesAndMissingTensors() throws Exception {
    Path dir = tmp.resolve("bad");
    ObjectNode cfg = TinyModels.LLAMA.configJson(1, 2);
    cfg.put("model_type", "falcon");
    ModelDirectory.write(dir, cfg, Map.of());
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> LanguageModel.load(dir, Device.cpu(), DataType.FLOAT32));
    assertTrue(e.getMessage().contains("unsupported model_type 'falcon'") && e.getMessage().contains("llama, mistral, qwen2, gpt2"), e.getMessage());
    Map<String, Tensor> t = new LinkedHashMap<>(TinyModels.tensors(TinyModels.LLAMA, 1));
    t.remove("model.layers.1.mlp.up_proj.weight");
    ModelDirectory.write(dir, TinyModels.LLAMA.configJson(1, 2), t);
    e = assertThrows(IllegalArgumentException.class, () -> LanguageModel.load(dir, Device.cpu(), DataType.FLOAT32));
    assertTrue(e.getMessage().contains("missing tensor 'model.layers.1.mlp.up_proj.weight' (shape [24, 16])"), e.getMessage());
  }

  @Test
  void initModelWritesALoadableDirectoryWithTokenizer() throws Exception {
    Path dir = tmp.resolve("init");
    ModelConfig c = ModelDirectory.initModel(dir, TinyModels.LLAMA, List.of("select", "from", "where", "*", "users", "="), 1);
    assertEquals(10, c.vocabSize());
    try (LanguageModel m = LanguageModel.load(dir, Device.cpu(), DataType.FLOAT32); Tokenizer tok = Tokenizer.load(dir)) {
      int[] ids = tok.encode("select * from users");
      assertArrayEquals(new int[] {4, 7, 5, 8}, ids);
      assertEquals("select * from users", tok.decode(ids));
      assertEquals(1, tok.bos().orElseThrow());
      assertEquals(2, tok.eos().orElseThrow());
      assertTrue(tok.addBos());
      assertEquals(64, tok.fingerprint().length());
      assertEquals(10, m.config().vocabSize());
    }
  }
}
