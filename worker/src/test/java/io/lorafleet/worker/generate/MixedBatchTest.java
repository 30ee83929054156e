package io.lorafleet.worker.generate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.worker.TinyModels;
import io.lorafleet.worker.flat.Trainable;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.DoraMethod;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.lora.MixedDelta;
import io.lorafleet.worker.lora.VeraMethod;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.model.ForwardContext;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.LinearDelta;
import io.lorafleet.worker.model.TinyModelSpec;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Adapters of different ranks, alphas, rsLoRA and targets in one batch: each row's logits equal the
 * same row run alone over the base with its adapter merged, and greedy generations (KV cache,
 * left padding) equal per-adapter runs.
 */
class MixedBatchTest {
  static List<AdapterFormat.Loaded> adapters(LanguageModel m, boolean gpt2) {
    List<LoraConfig> cfgs = gpt2
        ? List.of(LoraConfig.of(2, 4, List.of("c_attn")), LoraConfig.of(6, 3, List.of("c_attn", "c_fc")).withRslora(true),
            LoraConfig.of(4, 8, List.of("all-linear")))
        : List.of(LoraConfig.of(2, 4, List.of("q_proj", "v_proj")), LoraConfig.of(6, 3, List.of("all-linear")).withRslora(true),
            LoraConfig.of(4, 8, List.of("down_proj", "k_proj")).withPatterns(Map.of("k_proj", 3), Map.of("k_proj", 5.0)));
    return java.util.stream.IntStream.range(0, cfgs.size()).mapToObj(i -> {
      LoraModel lora = LoraModel.create(m, cfgs.get(i));
      return new AdapterFormat.Loaded(lora, TinyModels.trained(lora, 40 + i), Map.of());
    }).toList();
  }

  static float[] logits(LanguageModel m, ForwardContext ctx, int[][] ids) {
    int[][] labels = new int[ids.length][ids[0].length];
    return m.forward(ctx, Batch.of(ids, labels)).toFloatArray();
  }

  @ParameterizedTest
  @ValueSource(strings = {"llama", "gpt2"})
  void eachRowOfAMixedBatchIsItsRowAloneWithItsAdapterMerged(String arch) {
    TinyModelSpec spec = arch.equals("gpt2") ? TinyModels.GPT2 : TinyModels.LLAMA;
    int[][] ids = {{1, 5, 9, 13, 17}, {1, 30, 3, 7, 2}, {1, 4, 4, 8, 9}, {1, 2, 3, 4, 5}, {1, 11, 12, 13, 14}, {1, 6, 6, 6, 6}};
    int[] rowAdapter = {-1, 0, 0, 1, 2, 2}; // the base, then the adapters' segments
    try (LanguageModel m = TinyModels.model(spec, 3, DataType.FLOAT32)) {
      List<AdapterFormat.Loaded> a = adapters(m, arch.equals("gpt2"));
      float[] mixed;
      try (NDManager s = m.manager().newSubManager()) {
        mixed = logits(m, MixedDelta.bind(s, a, rowAdapter), ids);
      }
      int per = mixed.length / ids.length;
      double moved = 0;
      for (int r = 0; r < ids.length; r++) {
        float[] alone;
        float[] plain;
        try (NDManager s = m.manager().newSubManager()) {
          plain = logits(m, ForwardContext.inference(s, LinearDelta.NONE), new int[][] {ids[r]});
        }
        if (rowAdapter[r] >= 0) {
          a.get(rowAdapter[r]).model().merge(a.get(rowAdapter[r]).values());
        }
        try (NDManager s = m.manager().newSubManager()) {
          alone = logits(m, ForwardContext.inference(s, LinearDelta.NONE), new int[][] {ids[r]});
        } finally {
          if (rowAdapter[r] >= 0) {
            a.get(rowAdapter[r]).model().unmerge(a.get(rowAdapter[r]).values());
          }
        }
        for (int i = 0; i < per; i++) {
          assertEquals(alone[i], mixed[r * per + i], 1e-5, "row " + r + " logit " + i);
          moved = Math.max(moved, Math.abs(alone[i] - plain[i]));
        }
      }
      assertTrue(moved > 1e-2, "the adapters must change the logits for this test to mean anything: " + moved);
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"llama", "gpt2"})
  void mixedGreedyGenerationsEqualPerAdapterRuns(String arch) {
    TinyModelSpec spec = arch.equals("gpt2") ? TinyModels.GPT2 : TinyModels.LLAMA;
    int[][] prompts = {{1, 5, 9}, {1, 30, 3, 7, 2, 4}, {1, 4}, {1, 2, 3, 4, 5}, {1, 11, 12, 13}, {1, 6, 6}};
    int[] rowAdapter = {2, -1, 0, 1, 0, 2}; // any order: the batch is reordered into segments and back
    int[] maxNew = {6, 4, 5, 6, 3, 6};
    int[] stop = {-1, -1, -1, -1, -1, -1};
    try (LanguageModel m = TinyModels.model(spec, 4, DataType.FLOAT32)) {
      List<AdapterFormat.Loaded> a = adapters(m, arch.equals("gpt2"));
      int[][] mixed = Generator.greedyMixed(m, a, rowAdapter, prompts, maxNew, stop);
      for (int r = 0; r < prompts.length; r++) {
        Optional<Trainable> t = rowAdapter[r] < 0 ? Optional.empty() : Optional.of(a.get(rowAdapter[r]).model());
        float[] v = rowAdapter[r] < 0 ? new float[0] : a.get(rowAdapter[r]).values();
        int[] alone = Generator.generate(m, t, v, prompts[r], new Sampling(maxNew[r], 0, 1.0, 0), Optional.empty());
        assertArrayEquals(alone, mixed[r], "row " + r + " (adapter " + rowAdapter[r] + ")");
      }
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"dora", "vera"})
  void adaptersThatCannotMixAreRefusedByName(String kind) {
    try (LanguageModel m = TinyModels.model(TinyModels.LLAMA, 5, DataType.FLOAT32); NDManager s = m.manager().newSubManager()) {
      LoraConfig c = kind.equals("dora") ? LoraConfig.of(2, 4, List.of("q_proj")).withMethod(DoraMethod.INSTANCE)
          : LoraConfig.of(4, 4, List.of("q_proj")).withMethod(new VeraMethod(0.1, 0));
      LoraModel lora = LoraModel.create(m, c);
      var e = assertThrows(IllegalArgumentException.class,
          () -> MixedDelta.bind(s, List.of(new AdapterFormat.Loaded(lora, lora.initialParams(1), Map.of())), new int[] {0}));
      assertTrue(e.getMessage().contains(kind.equals("dora") ? "DoRA" : "VeRA"), e.getMessage());
    }
  }
}
