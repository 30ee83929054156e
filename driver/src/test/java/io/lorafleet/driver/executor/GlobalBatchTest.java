package io.lorafleet.driver.executor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lorafleet.driver.allreduce.SumTree;
import io.lorafleet.driver.kernels.Kernels;
import java.util.HashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The slots of a global batch: how workers share them, and that the sum over the shares does not depend on the number of workers. */
class GlobalBatchTest {
  @Test
  void sharesTileTheSlotsInOrderAndDifferByAtMostOne() {
    for (int slots = 1; slots <= 17; slots++) {
      for (int workers = 1; workers <= slots; workers++) {
        int next = 0;
        int min = Integer.MAX_VALUE;
        int max = 0;
        for (int r = 0; r < workers; r++) {
          SumTree.Node s = GlobalBatch.share(slots, workers, r);
          assertEquals(next, s.lo(), slots + " slots, " + workers + " workers, rank " + r);
          next = s.hi();
          min = Math.min(min, s.size());
          max = Math.max(max, s.size());
        }
        assertEquals(slots, next);
        assertTrue(max - min <= 1, slots + " slots over " + workers + " workers: shares of " + min + " to " + max);
      }
    }
    var tooMany = assertThrows(IllegalArgumentException.class, () -> GlobalBatch.share(2, 3, 0));
    assertTrue(tooMany.getMessage().contains("expected 1 <= workers <= slots"), tooMany.getMessage());
    var ragged = assertThrows(IllegalArgumentException.class, () -> GlobalBatch.slots(10, 4));
    assertEquals("--global-batch (10) must be a multiple of --micro-batch (4)", ragged.getMessage());
    assertEquals(1_000_016L, GlobalBatch.firstPosition(125_002, 8, 2, 0), "step·G + slot·m, in longs");
  }

  /** What N workers give: each adds the tree nodes inside its share, the driver adds the pushed nodes. */
  static float[] overWorkers(float[][] g, int workers) {
    int slots = g.length;
    Map<SumTree.Node, float[]> pushed = new HashMap<>();
    for (int r = 0; r < workers; r++) {
      for (SumTree.Node x : SumTree.cover(slots, GlobalBatch.share(slots, workers, r))) {
        Map<SumTree.Node, float[]> leaves = new HashMap<>();
        for (int j = x.lo(); j < x.hi(); j++) {
          leaves.put(new SumTree.Node(j, j + 1), g[j].clone());
        }
        pushed.put(x, SumTree.sum(x, leaves, 0, g[0].length).clone());
      }
    }
    return SumTree.sum(SumTree.root(slots), pushed, 0, g[0].length);
  }

  @Test
  void everyWorkerCountGivesTheSameBits() {
    int n = 4096;
    boolean orderShows = false;
    for (int slots = 1; slots <= 12; slots++) {
      float[][] g = io.lorafleet.driver.allreduce.SumTreeTest.gradients(slots, n, 100 + slots);
      float[] one = overWorkers(g, 1);
      for (int workers = 2; workers <= slots; workers++) {
        assertArrayEquals(one, overWorkers(g, workers), 0f, slots + " slots on " + workers + " workers");
      }
      // the old way, each rank's slots added one after another, then ranks over a tree of ranks, differs
      float[] sequential = g[0].clone();
      for (int j = 1; j < slots; j++) {
        Kernels.add(sequential, g[j], 0, n);
      }
      orderShows |= !java.util.Arrays.equals(one, sequential);
    }
    assertTrue(orderShows, "the data must be such that the order of additions shows in the bits");
  }
}
