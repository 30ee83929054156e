package io.lorafleet.worker.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.BaseNDManager;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.lorafleet.worker.TinyModels;
import io.lorafleet.worker.generate.DecodeBatch;
import java.lang.reflect.Field;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.junit.jupiter.api.Test;

/**
 * The KV cache holds its keys and values and nothing else: what a forward computes from them
 * belongs to the forward's scope. Once, a transpose of the cached keys joined the cache's manager
 * and, being a view, kept each step's whole cache alive as long as the batch lived: a server whose
 * batch never emptied grew by a cache's worth of keys per layer and step until memory ran out.
 */
class KvCacheTest {
  @Test
  void whatAForwardComputesFromTheCachedKeysBelongsToTheForwardsScope() {
    try (NDManager root = NDManager.newBaseManager(); KvCache cache = new KvCache(root, 1); NDManager step = root.newSubManager()) {
      NDArray k = step.randomNormal(new Shape(2, 1, 3, 4));
      NDArray[] kv = cache.append(0, k, k.add(1), step);
      cache.advance(3);
      assertSame(step, kv[0].getManager());
      assertSame(step, kv[0].transpose(0, 1, 3, 2).getManager(), "ops on the keys land in the step's scope");
      NDArray[] again = cache.append(0, k, k, step);
      cache.advance(3);
      assertEquals(new Shape(2, 1, 6, 4), again[0].getShape());
      float[] keys = again[0].toFloatArray();
      step.close();
      assertEquals(6, cache.length());
      try (NDManager next = root.newSubManager()) {
        NDArray[] kept = cache.append(0, next.zeros(new Shape(2, 1, 1, 4)), next.zeros(new Shape(2, 1, 1, 4)), next);
        float[] seven = kept[0].toFloatArray();
        for (int r = 0; r < 2; r++) { // (B, 1, S, 4): the first 6 positions of each row are the keys cached before the step closed
          for (int i = 0; i < 24; i++) {
            assertEquals(keys[r * 24 + i], seven[r * 28 + i], "the cache keeps its own arrays after a step's scope closed");
          }
        }
      }
    }
  }

  /** A batch that never empties (rows join and leave between 400 decode steps) holds a bounded number of arrays. */
  @Test
  void aLongLivedDecodeBatchHoldsABoundedNumberOfArrays() throws Exception {
    try (LanguageModel m = TinyModels.model(TinyModels.LLAMA, 3, DataType.FLOAT32); DecodeBatch b = new DecodeBatch(m)) {
      Map<Long, Integer> left = new HashMap<>();
      long id = 0;
      List<Integer> held = new ArrayList<>();
      for (int it = 0; it < 400; it++) {
        List<DecodeBatch.Join> joins = new ArrayList<>();
        while (b.size() + joins.size() < 4) {
          joins.add(new DecodeBatch.Join(id, new int[] {1, 2 + (int) (id % 5), 3}, -1, Optional.empty()));
          left.put(id++, 20 + (int) (id % 13));
        }
        b.join(joins);
        Map<Long, Integer> next = new HashMap<>();
        b.ids().forEach(r -> next.put(r, 5));
        b.step(next);
        List<Long> done = new ArrayList<>();
        for (long r : b.ids()) {
          if (left.merge(r, -1, Integer::sum) <= 0) {
            done.add(r);
          }
        }
        b.leave(done);
        held.add(arrays(m.manager()));
      }
      assertTrue(id > 40, "rows must have come and gone: " + id);
      int early = held.subList(0, 50).stream().mapToInt(Integer::intValue).max().orElseThrow();
      int late = held.subList(350, 400).stream().mapToInt(Integer::intValue).max().orElseThrow();
      assertTrue(late <= early, "arrays held grew from " + early + " to " + late + " over 400 steps");
    }
  }

  /** Arrays held under a manager and its sub-managers. */
  static int arrays(NDManager m) throws ReflectiveOperationException {
    Field f = BaseNDManager.class.getDeclaredField("resources");
    f.setAccessible(true);
    int n = 0;
    for (Object r : ((Map<?, ?>) f.get(m)).values()) {
      n += r instanceof NDManager sub ? arrays(sub) : 1;
    }
    return n;
  }
}
