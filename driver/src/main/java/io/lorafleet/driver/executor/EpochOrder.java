package io.lorafleet.driver.executor;

import java.util.Arrays;

/**
 * The order in which a run visits a split's rows: epoch after epoch, each a permutation of the row
 * ids computed from (seed, epoch) alone, so every worker derives it identically, N workers take
 * exactly the rows one worker would, and a resumed run continues at the checkpoint's position.
 *
 * <p>Rows are read a record batch at a time, so the permutation keeps locality: the batches are
 * shuffled, then each group of {@code window} consecutive shuffled batches has its rows shuffled
 * among themselves (a block shuffle, as streaming loaders do). A worker therefore needs at most a
 * group's batches at once, and reads each batch about once an epoch, however the split is sharded.
 * Both shuffles are Feistel permutations (keyed, bijective, O(1) memory) with cycle walking.
 */
public final class EpochOrder {
  private final int[] blockRows;
  private final long[] firstRow;
  private final long rows;
  private final long seed;
  private final int window;
  private long epoch = -1;
  private int[] order; // shuffled block order of the current epoch
  private long[] groupStart; // epoch-relative first position of each group

  /** @param blockRows row counts of the split's batches, in split order */
  public EpochOrder(int[] blockRows, long seed, int window) {
    if (window <= 0) {
      throw new IllegalArgumentException("--shuffle-window must be > 0 but found " + window);
    }
    this.blockRows = blockRows.clone();
    this.firstRow = new long[blockRows.length + 1];
    for (int b = 0; b < blockRows.length; b++) {
      firstRow[b + 1] = firstRow[b] + blockRows[b];
    }
    this.rows = firstRow[blockRows.length];
    if (rows == 0) {
      throw new IllegalArgumentException("the training split holds no rows");
    }
    this.seed = seed;
    this.window = window;
  }

  public long rows() {
    return rows;
  }

  /** The epoch that global position {@code p} falls in. */
  public long epochOf(long p) {
    return p / rows;
  }

  /** The split row visited at global position {@code p} (position = step · global batch + index in the batch). */
  public synchronized long rowAt(long p) {
    long e = p / rows;
    long i = p % rows;
    if (e != epoch) {
      prepare(e);
    }
    int g = Arrays.binarySearch(groupStart, i);
    g = g >= 0 ? g : -g - 2;
    while (g + 1 < groupStart.length && groupStart[g + 1] == groupStart[g]) {
      g++;
    }
    long groupRows = (g + 1 < groupStart.length ? groupStart[g + 1] : rows) - groupStart[g];
    long q = permute(i - groupStart[g], groupRows, key(e, g + 1));
    for (int j = g * window; j < Math.min(order.length, (g + 1) * window); j++) {
      int b = order[j];
      if (q < blockRows[b]) {
        return firstRow[b] + q;
      }
      q -= blockRows[b];
    }
    throw new IllegalStateException("position " + p + " fell outside its group");
  }

  private void prepare(long e) {
    int nb = blockRows.length;
    order = new int[nb];
    long k = key(e, 0);
    for (int j = 0; j < nb; j++) {
      order[j] = (int) permute(j, nb, k);
    }
    int groups = (nb + window - 1) / window;
    groupStart = new long[groups];
    long at = 0;
    for (int g = 0; g < groups; g++) {
      groupStart[g] = at;
      for (int j = g * window; j < Math.min(nb, (g + 1) * window); j++) {
        at += blockRows[order[j]];
      }
    }
    epoch = e;
  }

  private long key(long e, long stream) {
    return mix(mix(seed ^ 0x6c6f7261666c6565L) + e * 0x9e3779b97f4a7c15L + stream);
  }

  /** A keyed bijection of [0, n): a 4-round balanced Feistel network on the next even bit width, cycle-walked into range. */
  static long permute(long i, long n, long key) {
    if (n <= 1) {
      return 0;
    }
    int bits = 64 - Long.numberOfLeadingZeros(n - 1);
    bits += bits % 2;
    int half = bits / 2;
    long mask = (1L << half) - 1;
    long x = i;
    do {
      long l = x >>> half;
      long r = x & mask;
      for (int round = 0; round < 4; round++) {
        long f = mix(r ^ key ^ ((long) round << 56)) & mask;
        long t = r;
        r = l ^ f;
        l = t;
      }
      x = (l << half) | r;
    } while (x >= n);
    return x;
  }

  /** SplitMix64's finalizer. */
  static long mix(long z) {
    z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
    z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
    return z ^ (z >>> 31);
  }
}
