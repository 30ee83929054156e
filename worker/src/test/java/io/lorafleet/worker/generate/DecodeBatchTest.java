package io.lorafleet.worker.generate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.worker.TinyModels;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.MixedDelta;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.ForwardContext;
import io.lorafleet.worker.model.LinearDelta;
import io.lorafleet.worker.model.TinyModelSpec;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Continuous batching: rows of mixed adapters join a running batch between decode steps (with
 * prompts shorter and longer than the cache), and leave as they finish. Every step's logits of
 * every row equal a full forward, without any cache, over the row's prompt and the tokens chosen so
 * far with its adapter merged; so do the tokens.
 */
class DecodeBatchTest {
  /** A row of the schedule: when it joins, its prompt, adapter (−1: base) and length. */
  record Planned(int joinAt, int[] prompt, int adapter, int maxNew) {}

  static final List<Planned> PLAN = List.of(
      new Planned(0, new int[] {1, 5, 9}, 0, 3),
      new Planned(0, new int[] {1, 30, 3, 7, 2, 4}, -1, 7),
      new Planned(2, new int[] {1, 4}, 2, 6),
      new Planned(2, new int[] {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, 1, 5), // longer than the running cache: the cache is padded
      new Planned(4, new int[] {1, 11, 12, 13}, 0, 4),
      new Planned(4, new int[] {1, 6}, -1, 3));

  @ParameterizedTest
  @ValueSource(strings = {"llama", "gpt2"})
  void rowsJoiningAndLeavingEqualFullForwardsOfEachRowMerged(String arch) {
    TinyModelSpec spec = arch.equals("gpt2") ? TinyModels.GPT2 : TinyModels.LLAMA;
    try (LanguageModel m = TinyModels.model(spec, 6, DataType.FLOAT32)) {
      List<AdapterFormat.Loaded> a = MixedBatchTest.adapters(m, arch.equals("gpt2"));
      Map<Integer, List<Integer>> tokens = new HashMap<>();
      Map<Integer, List<float[]>> seen = new HashMap<>();
      int widest = 0;
      try (NDManager s = m.manager().newSubManager(); DecodeBatch batch = new DecodeBatch(m)) {
        List<LinearDelta> bound = MixedDelta.bindEach(s, a);
        Map<Long, float[]> logits = new HashMap<>();
        for (int it = 0; it < 20 && (it <= 4 || batch.size() > 0); it++) {
          List<DecodeBatch.Join> joins = new ArrayList<>();
          for (int r = 0; r < PLAN.size(); r++) {
            Planned p = PLAN.get(r);
            if (p.joinAt() == it) {
              joins.add(new DecodeBatch.Join(r, p.prompt(), p.adapter(), p.adapter() < 0 ? Optional.empty() : Optional.of(bound.get(p.adapter()))));
            }
          }
          Map<Long, float[]> all = new HashMap<>(logits);
          all.putAll(batch.join(joins));
          widest = Math.max(widest, batch.size());
          Map<Long, Integer> next = new HashMap<>();
          List<Long> done = new ArrayList<>();
          all.forEach((id, l) -> {
            int r = (int) (long) id;
            int t = Generator.argmax(l);
            tokens.computeIfAbsent(r, k -> new ArrayList<>()).add(t);
            seen.computeIfAbsent(r, k -> new ArrayList<>()).add(l);
            if (tokens.get(r).size() >= PLAN.get(r).maxNew()) {
              done.add(id);
            } else {
              next.put(id, t);
            }
          });
          batch.leave(done);
          logits = batch.step(next);
        }
        assertEquals(0, batch.size());
      }
      assertTrue(widest >= 4, "rows must overlap for the test to mean anything: " + widest);
      for (int r = 0; r < PLAN.size(); r++) {
        Planned p = PLAN.get(r);
        List<Integer> got = tokens.get(r);
        assertEquals(p.maxNew(), got.size(), "row " + r);
        int[] full = new int[p.prompt().length + got.size() - 1];
        System.arraycopy(p.prompt(), 0, full, 0, p.prompt().length);
        for (int k = 0; k < got.size() - 1; k++) {
          full[p.prompt().length + k] = got.get(k);
        }
        float[] ref = mergedForward(m, p.adapter() < 0 ? Optional.empty() : Optional.of(a.get(p.adapter())), full);
        int v = ref.length / full.length;
        for (int k = 0; k < got.size(); k++) {
          int at = p.prompt().length - 1 + k;
          float[] want = java.util.Arrays.copyOfRange(ref, at * v, (at + 1) * v);
          float[] was = seen.get(r).get(k);
          for (int i = 0; i < v; i++) {
            assertEquals(want[i], was[i], 1e-5, "row " + r + " step " + k + " logit " + i);
          }
          assertEquals(Generator.argmax(want), (int) got.get(k), "row " + r + " token " + k);
        }
        int[] alone = Generator.generate(m, p.adapter() < 0 ? Optional.empty() : Optional.of(a.get(p.adapter())), p.prompt(),
            Sampling.greedy(p.maxNew()), Optional.empty());
        assertArrayEquals(alone, got.stream().mapToInt(Integer::intValue).toArray(), "row " + r + " against generate alone");
      }
    }
  }

  /** (T, V) logits of one row, no cache, with its adapter merged into the base (and unmerged after). */
  static float[] mergedForward(LanguageModel m, Optional<AdapterFormat.Loaded> adapter, int[] ids) {
    adapter.ifPresent(x -> x.model().merge(x.values()));
    try (NDManager s = m.manager().newSubManager()) {
      return MixedBatchTest.logits(m, ForwardContext.inference(s, LinearDelta.NONE), new int[][] {ids});
    } finally {
      adapter.ifPresent(x -> x.model().unmerge(x.values()));
    }
  }

  @Test
  void aRowCannotJoinTwiceAndEveryRowNeedsItsToken() {
    try (LanguageModel m = TinyModels.model(TinyModels.LLAMA, 7, DataType.FLOAT32); DecodeBatch batch = new DecodeBatch(m)) {
      batch.join(List.of(new DecodeBatch.Join(1, new int[] {1, 2}, -1, Optional.empty())));
      var twice = assertThrows(IllegalArgumentException.class, () -> batch.join(List.of(new DecodeBatch.Join(1, new int[] {3}, -1, Optional.empty()))));
      assertTrue(twice.getMessage().contains("row 1"), twice.getMessage());
      var none = assertThrows(IllegalArgumentException.class, () -> batch.step(Map.of()));
      assertTrue(none.getMessage().contains("row 1"), none.getMessage());
      assertThrows(IllegalArgumentException.class, () -> new DecodeBatch.Join(2, new int[0], -1, Optional.empty()));
    }
  }
}
