package io.lorafleet.worker.lora;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.lorafleet.worker.TinyModels;
import io.lorafleet.worker.flat.FlatLayout;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.model.Dropout;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.ForwardContext;
import io.lorafleet.worker.model.LinearDelta;
import io.lorafleet.worker.model.TinyModelSpec;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class MergeAndAdapterTest {
  @TempDir Path tmp;

  static final Batch BATCH = Batch.of(new int[][] {{1, 4, 8, 15, 16, 23, 36}}, new int[][] {{-100, -100, 8, 15, 16, 23, 36}});

  static float[] trained(LoraModel lora, long seed) {
    return TinyModels.trained(lora, seed);
  }

  static float[] logits(LanguageModel m, LoraModel lora, float[] p) {
    try (NDManager s = m.manager().newSubManager()) {
      ForwardContext ctx = p == null ? ForwardContext.inference(s, LinearDelta.NONE) : lora.bind(s, p, false, Dropout.OFF).context();
      return m.forward(ctx, BATCH).toFloatArray();
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"llama", "qwen2", "gpt2", "gptj"})
  void mergedForwardEqualsUnmergedAndUnmergeRestores(String arch) {
    TinyModelSpec spec = arch.equals("llama") ? TinyModels.LLAMA : arch.equals("qwen2") ? TinyModels.QWEN2 : arch.equals("gptj") ? TinyModels.GPTJ
        : TinyModels.GPT2;
    try (LanguageModel m = TinyModels.model(spec, 3, DataType.FLOAT32)) {
      LoraModel lora = LoraModel.create(m, LoraConfig.of(4, 8, List.of("all-linear")).withBias("lora_only"));
      assertMergeIsExact(m, lora, trained(lora, 1), 1e-6f);
    }
  }

  /** The adapter in {@code a} reads back to {@code p} and writes again to the same bytes (weights and config). */
  static void assertRoundTripsByteForByte(Path a, LanguageModel m, float[] p) throws java.io.IOException {
    AdapterFormat.Loaded back = AdapterFormat.read(a, m);
    assertArrayEquals(p, back.values());
    Path again = a.resolveSibling(a.getFileName() + "-again");
    AdapterFormat.write(again, back.model(), back.values(), Map.of());
    assertArrayEquals(Files.readAllBytes(a.resolve(AdapterFormat.WEIGHTS)), Files.readAllBytes(again.resolve(AdapterFormat.WEIGHTS)));
    assertEquals(Files.readString(a.resolve(AdapterFormat.CONFIG)), Files.readString(again.resolve(AdapterFormat.CONFIG)));
  }

  /** Merged logits equal unmerged ones (1e-4), the adapter matters, and unmerge restores W (to {@code wTolerance}) and the logits. */
  static void assertMergeIsExact(LanguageModel m, LoraModel lora, float[] p, float wTolerance) {
    float[] base = logits(m, lora, null);
    float[] unmerged = logits(m, lora, p);
    float[] w0 = m.hfTensor(lora.targets().get(0).module().weightKey()).toFloatArray();
    lora.merge(p);
    float[] merged = logits(m, null, null);
    double diff = 0;
    for (int i = 0; i < base.length; i++) {
      diff = Math.max(diff, Math.abs(base[i] - unmerged[i]));
      assertEquals(unmerged[i], merged[i], 1e-4, "merged logit " + i);
    }
    assertTrue(diff > 1e-2, "the adapter must change the output for this test to mean anything, max diff " + diff);
    lora.unmerge(p);
    assertArrayEquals(w0, m.hfTensor(lora.targets().get(0).module().weightKey()).toFloatArray(), wTolerance);
    assertArrayEquals(base, logits(m, null, null), 1e-4f);
  }

  @Test
  void adaptersRoundTripByteStably() throws Exception {
    try (LanguageModel m = TinyModels.model(TinyModels.LLAMA, 3, DataType.FLOAT32)) {
      LoraModel lora = LoraModel.create(m, LoraConfig.of(4, 8, List.of("q_proj", "v_proj")).withPatterns(Map.of("v_proj", 2), Map.of()));
      float[] p = trained(lora, 2);
      Path a = tmp.resolve("a");
      AdapterFormat.write(a, lora, p, Map.of("lorafleet.step", "7"));
      AdapterFormat.Loaded back = AdapterFormat.read(a, m);
      assertArrayEquals(p, back.values());
      assertEquals("7", back.metadata().get("lorafleet.step"));
      assertEquals(lora.layout().signature(), back.model().layout().signature());
      Path b = tmp.resolve("b");
      AdapterFormat.write(b, back.model(), back.values(), back.metadata());
      assertArrayEquals(Files.readAllBytes(a.resolve(AdapterFormat.WEIGHTS)), Files.readAllBytes(b.resolve(AdapterFormat.WEIGHTS)));
      assertArrayEquals(Files.readAllBytes(a.resolve(AdapterFormat.CONFIG)), Files.readAllBytes(b.resolve(AdapterFormat.CONFIG)));
      var cfg = new ObjectMapper().readTree(a.resolve(AdapterFormat.CONFIG).toFile());
      assertEquals("LORA", cfg.get("peft_type").asText());
      assertEquals(2, cfg.get("rank_pattern").get("v_proj").asInt());
      var st = io.lorafleet.worker.safetensors.SafetensorsReader.open(a.resolve(AdapterFormat.WEIGHTS));
      assertEquals("pt", st.metadata().get("format"));
      assertArrayEquals(new long[] {4, 16}, st.tensors().get("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight").shape());
      assertArrayEquals(new long[] {8, 2}, st.tensors().get("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight").shape());
    }
  }

  @Test
  void gpt2KeysFollowPeft() throws Exception {
    try (LanguageModel m = TinyModels.model(TinyModels.GPT2, 3, DataType.FLOAT32)) {
      LoraModel lora = LoraModel.create(m, LoraConfig.of(2, 4, List.of("c_attn")));
      AdapterFormat.write(tmp, lora, lora.initialParams(1), Map.of());
      var st = io.lorafleet.worker.safetensors.SafetensorsReader.open(tmp.resolve(AdapterFormat.WEIGHTS));
      assertArrayEquals(new long[] {2, 16}, st.tensors().get("base_model.model.transformer.h.0.attn.c_attn.lora_A.weight").shape());
      assertArrayEquals(new long[] {48, 2}, st.tensors().get("base_model.model.transformer.h.0.attn.c_attn.lora_B.weight").shape());
      assertTrue(new ObjectMapper().readTree(tmp.resolve(AdapterFormat.CONFIG).toFile()).get("fan_in_fan_out").asBoolean());
    }
  }

  @Test
  void mismatchesAreClearErrors() throws Exception {
    try (LanguageModel llama = TinyModels.model(TinyModels.LLAMA, 3, DataType.FLOAT32);
        LanguageModel gpt2 = TinyModels.model(TinyModels.GPT2, 3, DataType.FLOAT32)) {
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> LoraModel.create(llama, LoraConfig.of(2, 4, List.of("q_proj", "c_attn"))));
      assertTrue(e.getMessage().contains("[c_attn]") && e.getMessage().contains("q_proj, k_proj"), e.getMessage());
      LoraModel lora = LoraModel.create(llama, LoraConfig.of(2, 4, List.of("q_proj")));
      AdapterFormat.write(tmp, lora, lora.initialParams(1), Map.of());
      e = assertThrows(IllegalArgumentException.class, () -> AdapterFormat.read(tmp, gpt2));
      assertTrue(e.getMessage().contains("does not fit the base model") && e.getMessage().contains("q_proj"), e.getMessage());
      // a base of another width: shapes differ
      try (LanguageModel wide = io.lorafleet.worker.model.LanguageModel.fromTensors(
          TinyModels.config(new TinyModelSpec("llama", 2, 32, 4, 2, 24, 37, 64, false)),
          TinyModels.tensors(new TinyModelSpec("llama", 2, 32, 4, 2, 24, 37, 64, false), 1), ai.djl.Device.cpu(), DataType.FLOAT32)) {
        e = assertThrows(IllegalArgumentException.class, () -> AdapterFormat.read(tmp, wide));
        assertTrue(e.getMessage().contains("has shape [2, 16] but adapter_config.json and the base model imply [2, 32]"), e.getMessage());
      }
      // an absurd r is refused from the header's shapes before the adapter is allocated
      Path cfg = tmp.resolve(AdapterFormat.CONFIG);
      var n = (com.fasterxml.jackson.databind.node.ObjectNode) new ObjectMapper().readTree(cfg.toFile());
      n.put("r", 1_000_000);
      Files.writeString(cfg, n.toString());
      e = assertThrows(IllegalArgumentException.class, () -> AdapterFormat.read(tmp, llama));
      assertTrue(e.getMessage().contains("lora_A.weight' has shape [2, 16] but adapter_config.json and the base model imply [1000000, 16]"), e.getMessage());
      n.put("r", 1 << 30);
      Files.writeString(cfg, n.toString());
      e = assertThrows(IllegalArgumentException.class, () -> AdapterFormat.read(tmp, llama));
      assertTrue(e.getMessage().contains("exceed one flat buffer"), e.getMessage());
    }
  }

  @Test
  void peftOptionsThatChangeTheModelAreRefusedByName() throws Exception {
    try (LanguageModel llama = TinyModels.model(TinyModels.LLAMA, 3, DataType.FLOAT32)) {
      LoraModel lora = LoraModel.create(llama, LoraConfig.of(2, 4, List.of("q_proj")));
      AdapterFormat.write(tmp, lora, lora.initialParams(1), Map.of());
      Path cfg = tmp.resolve(AdapterFormat.CONFIG);
      ObjectMapper json = new ObjectMapper();
      String original = Files.readString(cfg);
      Map<String, String> cases = Map.of(
          "{\"modules_to_save\": [\"lm_head\"]}", "modules_to_save [lm_head] applies to the sequence classifiers",
          "{\"lora_bias\": true}", "lora_bias is true",
          "{\"exclude_modules\": \"q_proj\"}", "exclude_modules is \"q_proj\"",
          "{\"layers_pattern\": \"layers\"}", "layers_pattern is \"layers\"",
          "{\"init_lora_weights\": \"pissa_niter_4\"}", "PEFT's pissa_niter_4 initialization is not supported",
          "{\"init_lora_weights\": \"olora\"}", "PEFT's olora initialization is not supported",
          "{\"peft_type\": \"IA3\"}", "peft_type is 'IA3', expected LORA, VERA or ADALORA");
      for (var c : cases.entrySet()) {
        var n = (com.fasterxml.jackson.databind.node.ObjectNode) json.readTree(original);
        n.setAll((com.fasterxml.jackson.databind.node.ObjectNode) json.readTree(c.getKey()));
        Files.writeString(cfg, n.toString());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> AdapterFormat.read(tmp, llama));
        assertTrue(e.getMessage().contains(c.getValue()) && e.getMessage().contains(AdapterFormat.CONFIG), e.getMessage());
      }
      var n = (com.fasterxml.jackson.databind.node.ObjectNode) json.readTree(original);
      n.putNull("modules_to_save");
      n.putArray("exclude_modules");
      Files.writeString(cfg, n.toString());
      assertEquals(lora.layout().size(), AdapterFormat.read(tmp, llama).values().length, "null and empty are PEFT's defaults");
    }
  }
  @Test
  void initLoraWeightsFalseStartsFromRandomFactorsAndIsWrittenAsPeftWritesIt() throws Exception {
    try (LanguageModel llama = TinyModels.model(TinyModels.LLAMA, 3, DataType.FLOAT32)) {
      LoraModel lora = LoraModel.create(llama, LoraConfig.of(2, 4, List.of("q_proj", "v_proj")).withInit("false"));
      float[] p = lora.initialParams(5);
      FlatLayout.Slot b = lora.layout().slots().stream().filter(s -> s.key().contains("lora_B")).findFirst().orElseThrow();
      double bound = 1 / Math.sqrt(2);
      double max = 0;
      for (int i = b.offset(); i < b.offset() + b.size(); i++) {
        max = Math.max(max, Math.abs(p[i]));
      }
      assertTrue(max > 0 && max <= bound, "B ~ U(±1/sqrt(r)) as nn.Linear leaves it: " + max);
      AdapterFormat.write(tmp, lora, p, Map.of());
      var n = new ObjectMapper().readTree(tmp.resolve(AdapterFormat.CONFIG).toFile());
      assertTrue(n.get("init_lora_weights").isBoolean() && !n.get("init_lora_weights").asBoolean(), n.toString());
      assertEquals("false", AdapterFormat.readConfig(tmp).initLoraWeights());
      byte[] first = Files.readAllBytes(tmp.resolve(AdapterFormat.WEIGHTS));
      var loaded = AdapterFormat.read(tmp, llama);
      Path again = tmp.resolve("again");
      AdapterFormat.write(again, loaded.model(), loaded.values(), Map.of());
      org.junit.jupiter.api.Assertions.assertArrayEquals(first, Files.readAllBytes(again.resolve(AdapterFormat.WEIGHTS)));
      assertEquals(Files.readString(tmp.resolve(AdapterFormat.CONFIG)), Files.readString(again.resolve(AdapterFormat.CONFIG)));
      assertEquals("gaussian", LoraConfig.of(2, 4, List.of("q_proj")).withInit("gaussian").initLoraWeights());
      assertEquals("kaiming", LoraConfig.of(2, 4, List.of("q_proj")).withInit("true").initLoraWeights());
    }
  }
}
