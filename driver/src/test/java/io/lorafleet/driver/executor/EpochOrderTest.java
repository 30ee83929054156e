package io.lorafleet.driver.executor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;

class EpochOrderTest {
  @Test
  void feistelIsABijectionOfEveryRange() {
    for (long n : new long[] {1, 2, 3, 7, 64, 100, 1000, 4097}) {
      Set<Long> seen = new HashSet<>();
      for (long i = 0; i < n; i++) {
        long x = EpochOrder.permute(i, n, 12345);
        assertTrue(x >= 0 && x < n);
        seen.add(x);
      }
      assertEquals(n, seen.size(), "a permutation of [0, " + n + ")");
    }
  }

  @Test
  void eachEpochVisitsEveryRowOnceInAnOrderOfItsOwnWithBlockLocality() {
    int[] blocks = {256, 256, 100, 0, 256, 37, 256, 256, 19};
    long rows = java.util.Arrays.stream(blocks).sum();
    EpochOrder a = new EpochOrder(blocks, 7, 2);
    EpochOrder b = new EpochOrder(blocks, 7, 2);
    long[] first = new long[(int) rows];
    for (int e = 0; e < 3; e++) {
      Set<Long> seen = new HashSet<>();
      long[] order = new long[(int) rows];
      for (long i = 0; i < rows; i++) {
        long p = e * rows + i;
        order[(int) i] = a.rowAt(p);
        assertEquals(order[(int) i], b.rowAt(p), "every worker derives the same order");
        seen.add(order[(int) i]);
      }
      assertEquals(rows, seen.size(), "epoch " + e + " is a permutation of the rows");
      if (e == 0) {
        first = order;
      } else {
        assertNotEquals(List.of(first), List.of(order), "epoch " + e + " has an order of its own");
        assertTrue(!java.util.Arrays.equals(first, order));
      }
    }
    // a run resumed at any position continues the same order (nothing depends on what was visited before)
    EpochOrder resumed = new EpochOrder(blocks, 7, 2);
    assertEquals(a.rowAt(rows + 123), resumed.rowAt(rows + 123));
    // locality: the first 100 positions come from at most one group of 2 batches (plus the next group)
    Set<Integer> blocksTouched = new HashSet<>();
    long[] firstRow = new long[blocks.length + 1];
    for (int i = 0; i < blocks.length; i++) {
      firstRow[i + 1] = firstRow[i] + blocks[i];
    }
    for (long p = 0; p < 100; p++) {
      long r = a.rowAt(p);
      for (int k = 0; k < blocks.length; k++) {
        if (r >= firstRow[k] && r < firstRow[k + 1]) {
          blocksTouched.add(k);
        }
      }
    }
    assertTrue(blocksTouched.size() <= 4, "positions 0..99 read " + blocksTouched.size() + " batches");
    EpochOrder other = new EpochOrder(blocks, 8, 2);
    boolean differs = false;
    for (long p = 0; p < rows; p++) {
      differs |= other.rowAt(p) != a.rowAt(p);
    }
    assertTrue(differs, "another seed, another order");
  }
}
