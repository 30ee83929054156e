package io.lorafleet.driver.allreduce;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lorafleet.driver.kernels.Kernels;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

public class SumTreeTest {
  static SumTree.Node node(int lo, int hi) {
    return new SumTree.Node(lo, hi);
  }

  static BitSet ranks(int... r) {
    BitSet b = new BitSet();
    for (int x : r) {
      b.set(x);
    }
    return b;
  }

  @Test
  void alignedGroupsAreSingleNodesAndOthersAFew() {
    assertEquals(List.of(node(0, 2)), SumTree.cover(4, ranks(0, 1)));
    assertEquals(List.of(node(2, 4)), SumTree.cover(4, ranks(2, 3)));
    assertEquals(List.of(node(0, 8)), SumTree.cover(8, ranks(0, 1, 2, 3, 4, 5, 6, 7)));
    assertEquals(List.of(node(0, 2), node(2, 3)), SumTree.cover(6, ranks(0, 1, 2)));
    assertEquals(List.of(node(0, 3)), SumTree.cover(3, ranks(0, 1, 2)), "the whole job is the root, whatever its size");
    assertEquals(List.of(node(1, 2), node(3, 4)), SumTree.cover(4, ranks(1, 3)));
    assertTrue(SumTree.isNode(6, node(4, 6)));
    assertFalse(SumTree.isNode(6, node(1, 3)), "straddles the split at 2");
    assertFalse(SumTree.isNode(6, node(0, 7)));
  }

  /** Values of very different magnitudes, so that the order of additions shows in the bits. */
  public static float[][] gradients(int ranks, int n, long seed) {
    Random rnd = new Random(seed);
    float[][] g = new float[ranks][n];
    for (float[] x : g) {
      for (int i = 0; i < n; i++) {
        x[i] = (float) (rnd.nextGaussian() * Math.pow(10, rnd.nextInt(9) - 4));
      }
    }
    return g;
  }

  static float[] flat(float[][] g) {
    Map<SumTree.Node, float[]> leaves = new HashMap<>();
    for (int r = 0; r < g.length; r++) {
      leaves.put(node(r, r + 1), g[r].clone());
    }
    return SumTree.sum(SumTree.root(g.length), leaves, 0, g[0].length).clone();
  }

  /** Each group adds its own ranks over its cover nodes, then the driver adds the nodes. */
  static float[] grouped(float[][] g, List<BitSet> groups) {
    Map<SumTree.Node, float[]> pushed = new HashMap<>();
    for (BitSet members : groups) {
      for (SumTree.Node x : SumTree.cover(g.length, members)) {
        Map<SumTree.Node, float[]> leaves = new HashMap<>();
        for (int r = x.lo(); r < x.hi(); r++) {
          leaves.put(node(r, r + 1), g[r].clone());
        }
        pushed.put(x, SumTree.sum(x, leaves, 0, g[0].length));
      }
    }
    return SumTree.sum(SumTree.root(g.length), pushed, 0, g[0].length);
  }

  @Test
  void everyGroupingGivesTheFlatSumBitForBit() {
    Random rnd = new Random(11);
    for (int n : new int[] {2, 3, 4, 5, 7, 8, 12}) {
      float[][] g = gradients(n, 301, n);
      float[] flat = flat(g);
      for (int trial = 0; trial < 20; trial++) {
        int k = 1 + rnd.nextInt(n);
        List<BitSet> groups = new ArrayList<>();
        for (int i = 0; i < k; i++) {
          groups.add(new BitSet());
        }
        for (int r = 0; r < n; r++) {
          groups.get(rnd.nextInt(k)).set(r);
        }
        assertArrayEquals(flat, grouped(g, groups), 0f, n + " ranks in " + groups);
      }
    }
  }

  @Test
  void theOrderShowsInTheBits() {
    // the check above can fail: summing the same values in rank order gives other bits
    float[][] g = gradients(7, 301, 7);
    float[] fold = g[0].clone();
    for (int r = 1; r < g.length; r++) {
      Kernels.add(fold, g[r], 0, fold.length);
    }
    float[] tree = flat(g);
    int differ = 0;
    for (int i = 0; i < tree.length; i++) {
      differ += tree[i] != fold[i] ? 1 : 0;
    }
    assertTrue(differ > 0, "a rank-order fold and the tree agree everywhere: the test data cannot tell orders apart");
  }
}
