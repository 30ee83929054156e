package io.lorafleet.worker.lora;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.lorafleet.worker.TinyModels;
import io.lorafleet.worker.flat.FlatLayout;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.safetensors.SafetensorsReader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * VeRA with PEFT's semantics (peft/tuners/vera/layer.py and model.py): shared frozen projections
 * vera_A (r, max in) and vera_B (max out, r), sliced per module, λ_b from 0 and λ_d from d_initial,
 * ΔW = diag(λ_b)·B·diag(λ_d)·A, PEFT's keys and VeraConfig fields. Gradients: {@code GradientCheckTest}.
 */
class VeraTest {
  @TempDir Path tmp;

  static LoraConfig vera(List<String> targets) {
    return LoraConfig.of(6, 6, targets).withMethod(new VeraMethod(0.1, 0));
  }

  @Test
  void theLayoutIsPeftsAndTheProjectionsAreSharedAndFrozen() {
    try (LanguageModel m = TinyModels.model(TinyModels.LLAMA, 3, DataType.FLOAT32)) {
      LoraModel v = LoraModel.create(m, vera(List.of("q_proj", "k_proj", "down_proj")));
      FlatLayout.Slot a = v.layout().slot(VeraMethod.VERA_A).orElseThrow();
      FlatLayout.Slot b = v.layout().slot(VeraMethod.VERA_B).orElseThrow();
      int maxIn = v.targets().stream().mapToInt(t -> t.module().in()).max().orElseThrow();
      int maxOut = v.targets().stream().mapToInt(t -> t.module().out()).max().orElseThrow();
      assertArrayEquals(new long[] {6, maxIn}, a.shape());
      assertArrayEquals(new long[] {maxOut, 6}, b.shape());
      assertTrue(a.frozen() && b.frozen());
      float[] p = v.initialParams(1);
      for (LoraTarget t : v.targets()) {
        FlatLayout.Slot lb = v.layout().slot(t.keyLambdaB()).orElseThrow();
        FlatLayout.Slot ld = v.layout().slot(t.keyLambdaD()).orElseThrow();
        assertArrayEquals(new long[] {t.module().out()}, lb.shape());
        assertArrayEquals(new long[] {6}, ld.shape());
        for (int i = 0; i < ld.size(); i++) {
          assertEquals(0.1f, p[ld.offset() + i]);
        }
        for (int i = 0; i < lb.size(); i++) {
          assertEquals(0f, p[lb.offset() + i]);
        }
      }
      double boundA = Math.sqrt(6.0 / maxIn);
      for (int i = a.offset(); i < a.offset() + a.size(); i++) {
        assertTrue(Math.abs(p[i]) <= boundA, "vera_A ~ U(±sqrt(6/fan_in))");
      }
      assertArrayEquals(v.layout().slice(p, a), v.layout().slice(v.initialParams(99), a), "the projections follow projection_prng_key, not the seed");
      assertArrayEquals(MergeAndAdapterTest.logits(m, v, null), MergeAndAdapterTest.logits(m, v, p), 0f, "λ_b = 0: the base at init");
    }
  }

  /** One module's ΔW from the definition, in float64, against what merge adds to W (stored (in, out)). */
  @Test
  void mergeAddsTheDefinitionsDelta() {
    try (LanguageModel m = TinyModels.model(TinyModels.LLAMA, 4, DataType.FLOAT32)) {
      LoraModel v = LoraModel.create(m, vera(List.of("down_proj")));
      float[] p = MergeAndAdapterTest.trained(v, 3);
      LoraTarget t = v.targets().get(0);
      int in = t.module().in();
      int out = t.module().out();
      FlatLayout.Slot a = v.layout().slot(VeraMethod.VERA_A).orElseThrow();
      FlatLayout.Slot b = v.layout().slot(VeraMethod.VERA_B).orElseThrow();
      int maxIn = (int) a.shape()[1];
      FlatLayout.Slot lb = v.layout().slot(t.keyLambdaB()).orElseThrow();
      FlatLayout.Slot ld = v.layout().slot(t.keyLambdaD()).orElseThrow();
      float[] before = m.hfTensor(t.module().weightKey()).toFloatArray(); // torch layout (out, in)
      v.merge(p);
      float[] after = m.hfTensor(t.module().weightKey()).toFloatArray();
      for (int o = 0; o < out; o++) {
        for (int i = 0; i < in; i++) {
          double d = 0;
          for (int k = 0; k < 6; k++) {
            d += (double) p[b.offset() + o * 6 + k] * p[ld.offset() + k] * p[a.offset() + k * maxIn + i];
          }
          d *= p[lb.offset() + o];
          assertEquals(before[o * in + i] + d, after[o * in + i], 1e-5, "W[" + o + "," + i + "]");
        }
      }
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"llama", "gpt2"})
  void mergedForwardEqualsUnmergedAndUnmergeRestores(String arch) {
    try (LanguageModel m = TinyModels.model(arch.equals("llama") ? TinyModels.LLAMA : TinyModels.GPT2, 3, DataType.FLOAT32)) {
      LoraModel v = LoraModel.create(m, vera(List.of("all-linear")).withBias("lora_only"));
      float[] p = v.initialParams(1);
      java.util.Random r = new java.util.Random(2);
      for (LoraTarget t : v.targets()) { // λ_b away from 0, so that the adapter acts
        FlatLayout.Slot lb = v.layout().slot(t.keyLambdaB()).orElseThrow();
        for (int i = lb.offset(); i < lb.offset() + lb.size(); i++) {
          p[i] = (float) r.nextGaussian() * 3;
        }
      }
      MergeAndAdapterTest.assertMergeIsExact(m, v, p, 1e-5f);
    }
  }

  @Test
  void adaptersCarryPeftsKeysAndVeraConfigAndRoundTripByteForByte() throws Exception {
    try (LanguageModel m = TinyModels.model(TinyModels.LLAMA, 3, DataType.FLOAT32)) {
      LoraModel v = LoraModel.create(m, vera(List.of("q_proj", "v_proj")).withDropout(0.05).withBias("lora_only"));
      float[] p = MergeAndAdapterTest.trained(v, 2);
      Path a = tmp.resolve("a");
      AdapterFormat.write(a, v, p, Map.of());
      var conf = new ObjectMapper().readTree(a.resolve(AdapterFormat.CONFIG).toFile());
      assertEquals("VERA", conf.get("peft_type").asText());
      assertTrue(conf.get("save_projection").asBoolean());
      assertEquals(0.1, conf.get("d_initial").asDouble());
      assertEquals(0, conf.get("projection_prng_key").asInt());
      assertEquals(0.05, conf.get("vera_dropout").asDouble());
      assertEquals("vera_only", conf.get("bias").asText());
      assertTrue(!conf.has("lora_alpha") && !conf.has("use_dora"), conf.toString());
      var keys = SafetensorsReader.open(a.resolve(AdapterFormat.WEIGHTS)).tensors().keySet();
      assertTrue(keys.contains("base_model.vera_A") && keys.contains("base_model.vera_B")
          && keys.contains("base_model.model.model.layers.0.self_attn.q_proj.vera_lambda_b")
          && keys.contains("base_model.model.model.layers.1.self_attn.v_proj.vera_lambda_d"), keys.toString());
      MergeAndAdapterTest.assertRoundTripsByteForByte(a, m, p);
      var n = (com.fasterxml.jackson.databind.node.ObjectNode) conf;
      n.put("save_projection", false);
      Files.writeString(a.resolve(AdapterFormat.CONFIG), n.toString());
      var e = assertThrows(IllegalArgumentException.class, () -> AdapterFormat.read(a, m));
      assertTrue(e.getMessage().contains("save_projection is false"), e.getMessage());
    }
  }
}
