package io.lorafleet.worker.lora;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.lorafleet.worker.TinyModels;
import io.lorafleet.worker.flat.FlatLayout;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.safetensors.SafetensorsReader;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * AdaLoRA's adapter with PEFT's semantics (peft/tuners/adalora/layer.py SVDLinear and model.py):
 * ΔW = B·(A⊙E)·lora_alpha/(init_r + 1e-5), E from 0 and A, B from N(0, 0.02²), keys without
 * ".weight", AdaLoraConfig's fields, and truncation to a rank pattern that keeps the function. The
 * allocation itself is the driver's ({@code RankAllocatorTest}).
 */
class AdaloraTest {
  @TempDir Path tmp;

  static LoraConfig adalora() {
    return LoraConfig.of(8, 16, List.of("q_proj", "down_proj")).withMethod(AdaloraMethod.of(4, 2, 0, 0, 1, 0.85, 0.85, 0.5, 10));
  }

  @Test
  void layoutInitAndMergeFollowTheDefinition() {
    try (LanguageModel m = TinyModels.model(TinyModels.LLAMA, 3, DataType.FLOAT32)) {
      LoraModel a = LoraModel.create(m, adalora());
      LoraTarget t = a.targets().get(1);
      assertEquals(List.of("base_model.model.model.layers.0.self_attn.q_proj.lora_A", "base_model.model.model.layers.0.self_attn.q_proj.lora_E",
          "base_model.model.model.layers.0.self_attn.q_proj.lora_B"), a.layout().slots().subList(0, 3).stream().map(FlatLayout.Slot::key).toList());
      float[] init = a.initialParams(2);
      FlatLayout.Slot e = a.layout().slot(t.keyAdaE()).orElseThrow();
      assertArrayEquals(new long[] {4, 1}, e.shape());
      for (int i = e.offset(); i < e.offset() + e.size(); i++) {
        assertEquals(0f, init[i], "E starts at 0");
      }
      assertArrayEquals(MergeAndAdapterTest.logits(m, a, null), MergeAndAdapterTest.logits(m, a, init), 0f, "E = 0: the base at init");
      float[] p = MergeAndAdapterTest.trained(a, 4);
      float[] before = m.hfTensor(t.module().weightKey()).toFloatArray(); // (out, in)
      a.merge(p);
      float[] after = m.hfTensor(t.module().weightKey()).toFloatArray();
      FlatLayout.Slot sa = a.layout().slot(t.keyAdaA()).orElseThrow();
      FlatLayout.Slot sb = a.layout().slot(t.keyAdaB()).orElseThrow();
      int in = t.module().in();
      double scale = 16 / (4 + 1e-5);
      for (int o = 0; o < t.module().out(); o++) {
        for (int i = 0; i < in; i++) {
          double d = 0;
          for (int k = 0; k < 4; k++) {
            d += (double) p[sb.offset() + o * 4 + k] * p[sa.offset() + k * in + i] * p[e.offset() + k];
          }
          assertEquals(before[o * in + i] + d * scale, after[o * in + i], 1e-5, "W[" + o + "," + i + "]");
        }
      }
      a.unmerge(p);
    }
  }

  @Test
  void mergedForwardEqualsUnmerged() {
    try (LanguageModel m = TinyModels.model(TinyModels.GPT2, 3, DataType.FLOAT32)) {
      LoraModel a = LoraModel.create(m, LoraConfig.of(8, 16, List.of("all-linear")).withMethod(AdaloraMethod.of(4, 2, 0, 0, 1, 0.85, 0.85,
          0.5, 10)));
      float[] p = a.initialParams(1);
      java.util.Random r = new java.util.Random(3);
      for (int i = 0; i < p.length; i++) {
        p[i] += (float) (r.nextGaussian() * 0.5);
      }
      MergeAndAdapterTest.assertMergeIsExact(m, a, p, 1e-5f);
    }
  }

  @Test
  void aTruncatedAdapterKeepsTheFunctionAndIsWrittenAsPeftWritesIt() throws Exception {
    try (LanguageModel m = TinyModels.model(TinyModels.LLAMA, 3, DataType.FLOAT32)) {
      LoraModel a = LoraModel.create(m, adalora());
      float[] p = MergeAndAdapterTest.trained(a, 5);
      Map<String, List<Boolean>> pattern = new TreeMap<>();
      for (LoraTarget t : a.targets()) {
        List<Boolean> keep = new ArrayList<>(List.of(true, false, true, false));
        pattern.put(t.module().name() + ".lora_E", keep);
        FlatLayout.Slot e = a.layout().slot(t.keyAdaE()).orElseThrow();
        p[e.offset() + 1] = 0; // masked, as the allocator leaves them
        p[e.offset() + 3] = 0;
      }
      LoraModel.Values cut = ((AdaloraMethod) a.config().method()).truncate(a, p, pattern);
      assertArrayEquals(MergeAndAdapterTest.logits(m, a, p), MergeAndAdapterTest.logits(m, cut.model(), cut.values()), 1e-6f,
          "masked ranks contribute nothing, and the scaling stays lora_alpha/init_r");
      Path dir = tmp.resolve("a");
      AdapterFormat.write(dir, cut.model(), cut.values(), Map.of());
      var conf = new ObjectMapper().readTree(dir.resolve(AdapterFormat.CONFIG).toFile());
      assertEquals("ADALORA", conf.get("peft_type").asText());
      assertEquals(4, conf.get("init_r").asInt());
      assertEquals(2, conf.get("target_r").asInt());
      assertEquals(10, conf.get("total_step").asInt());
      assertEquals("[true,false,true,false]", conf.get("rank_pattern").get("model.layers.0.self_attn.q_proj.lora_E").toString());
      var tensors = SafetensorsReader.open(dir.resolve(AdapterFormat.WEIGHTS)).tensors();
      assertArrayEquals(new long[] {2, 1}, tensors.get("base_model.model.model.layers.0.self_attn.q_proj.lora_E").shape());
      assertTrue(tensors.containsKey("base_model.model.model.layers.1.mlp.down_proj.lora_B"), tensors.keySet().toString());
      MergeAndAdapterTest.assertRoundTripsByteForByte(dir, m, cut.values());
    }
  }
}
