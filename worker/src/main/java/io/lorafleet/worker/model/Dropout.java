package io.lorafleet.worker.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;

/**
 * Training-mode dropout whose masks depend on what they mask and nothing else: the element at
 * (row b, i1, …, in) of a module's input is dropped when a counter-based hash of (seed, the row's
 * key, the module, i1, …, in) falls below p. A row's key is its position in the run's data order,
 * so a row gets the same mask whichever worker computes it, in whichever micro-batch, beside
 * whichever rows and under however much padding: N workers train what one worker trains, and a
 * recomputed piece (gradient checkpointing) draws the masks it drew the first time.
 *
 * <p>Kept elements are scaled by 1/(1−p) (inverted dropout, as torch.nn.Dropout). The hash is
 * SplitMix64's finalizer over a running key: each index folds into the key of its line, and the
 * last axis is a counter, so the mask of a row's first T tokens does not change when the batch is
 * padded to more.
 *
 * @param seed the run's dropout seed; negative: evaluation, no dropout
 * @param rowKeys each row's key, in batch order
 */
public record Dropout(long seed, long[] rowKeys) {
  /** Evaluation and generation: no mask. */
  public static final Dropout OFF = new Dropout(-1, new long[0]);

  public Dropout {
    rowKeys = rowKeys.clone();
  }

  /** Training with {@code seed} over a batch's rows. */
  public static Dropout of(long seed, Batch batch) {
    return new Dropout(seed, batch.rowKeys());
  }

  public boolean on() {
    return seed >= 0;
  }

  /**
   * x · mask for module {@code module} at drop probability {@code p}; x itself when off or p is 0.
   * x's first axis is the batch's rows.
   */
  public NDArray apply(NDManager manager, NDArray x, long module, double p) {
    if (!on() || p <= 0) {
      return x;
    }
    return x.mul(manager.create(mask(x.getShape().getShape(), module, p), x.getShape()).toType(x.getDataType(), false));
  }

  /** The mask {@link #apply} multiplies a tensor of {@code shape} (rows first) by, row-major: 0 or 1/(1−p). */
  public float[] mask(long[] shape, long module, double p) {
    if (shape.length < 2 || shape[0] != rowKeys.length) {
      throw new IllegalStateException("a dropout mask needs a tensor of the batch's " + rowKeys.length + " rows, found shape "
          + java.util.Arrays.toString(shape));
    }
    int last = Math.toIntExact(shape[shape.length - 1]);
    long lines = 1;
    for (int d = 1; d < shape.length - 1; d++) {
      lines *= shape[d];
    }
    float[] m = new float[Math.toIntExact(shape[0] * lines * last)];
    float keep = (float) (1.0 / (1.0 - p));
    long threshold = (long) (p * (1L << 53));
    int[] index = new int[shape.length - 2];
    int o = 0;
    for (int b = 0; b < rowKeys.length; b++) {
      long rowKey = mix(mix(mix(seed) ^ rowKeys[b]) ^ module);
      java.util.Arrays.fill(index, 0);
      for (long l = 0; l < lines; l++) {
        long key = rowKey;
        for (int i : index) {
          key = mix(key ^ i);
        }
        for (int k = 0; k < last; k++) {
          m[o++] = (mix(key + 0x9E3779B97F4A7C15L * (k + 1)) >>> 11) < threshold ? 0f : keep;
        }
        for (int d = index.length - 1; d >= 0; d--) { // the next line: an odometer over the middle axes
          if (++index[d] < shape[d + 1]) {
            break;
          }
          index[d] = 0;
        }
      }
    }
    return m;
  }

  /** SplitMix64's finalizer (Steele, Lea and Flood 2014): a bijection that spreads every input bit. */
  static long mix(long z) {
    z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
    z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
    return z ^ (z >>> 31);
  }
}
