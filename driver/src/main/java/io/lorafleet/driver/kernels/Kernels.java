package io.lorafleet.driver.kernels;

import java.util.function.IntConsumer;
import java.util.stream.IntStream;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * The driver's elementwise float kernels, on the JDK's Vector API (AVX-512 or AVX2 lanes). Each
 * lane does exactly what the scalar loop does (an IEEE add or multiply, never fused, never
 * reordered), so a vector body and a scalar tail agree bit for bit, and so do any chunking and any
 * number of threads: the sum of N gradients depends only on the order in which they are added.
 */
public final class Kernels {
  static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
  /** Floats per parallel task: big enough to amortize a fork, small enough to share 2 to 64 cores. */
  public static final int TASK = 1 << 18;
  /** Squares are summed in float over blocks this long, then in double, for an accurate norm at vector speed. */
  private static final int NORM_BLOCK = 1 << 10;

  private Kernels() {}

  /** dst[i] += src[i] for i in [from, to). */
  public static void add(float[] dst, float[] src, int from, int to) {
    int i = from;
    for (int end = from + F.loopBound(to - from); i < end; i += F.length()) {
      FloatVector.fromArray(F, dst, i).add(FloatVector.fromArray(F, src, i)).intoArray(dst, i);
    }
    for (; i < to; i++) {
      dst[i] += src[i];
    }
  }

  /** a[i] = a[i] + s·b[i] for i in [from, to): a multiply, then an add (never fused). */
  public static void addScaled(float[] a, float[] b, float s, int from, int to) {
    int i = from;
    for (int end = from + F.loopBound(to - from); i < end; i += F.length()) {
      FloatVector.fromArray(F, a, i).add(FloatVector.fromArray(F, b, i).mul(s)).intoArray(a, i);
    }
    for (; i < to; i++) {
      a[i] = a[i] + s * b[i];
    }
  }

  /** a[i] *= s for i in [from, to). */
  public static void scale(float[] a, float s, int from, int to) {
    int i = from;
    for (int end = from + F.loopBound(to - from); i < end; i += F.length()) {
      FloatVector.fromArray(F, a, i).mul(s).intoArray(a, i);
    }
    for (; i < to; i++) {
      a[i] *= s;
    }
  }

  /** The first index in [from, to) holding NaN or an infinity, or -1. */
  public static int firstNonFinite(float[] a, int from, int to) {
    int i = from;
    for (int end = from + F.loopBound(to - from); i < end; i += F.length()) {
      FloatVector v = FloatVector.fromArray(F, a, i);
      // x - x is 0 for every finite x and NaN for NaN and the infinities
      if (v.sub(v).test(VectorOperators.IS_NAN).anyTrue()) {
        break;
      }
    }
    for (; i < to; i++) {
      if (!Float.isFinite(a[i])) {
        return i;
      }
    }
    return -1;
  }

  /** Σ a[i]² over [from, to), in a fixed order (so the same on every run and thread count). */
  public static double sumSquares(float[] a, int from, int to) {
    double total = 0;
    for (int b = from; b < to; b += NORM_BLOCK) {
      int e = Math.min(to, b + NORM_BLOCK);
      FloatVector acc = FloatVector.zero(F);
      int i = b;
      for (int end = b + F.loopBound(e - b); i < end; i += F.length()) {
        FloatVector v = FloatVector.fromArray(F, a, i);
        acc = acc.add(v.mul(v));
      }
      float s = acc.reduceLanes(VectorOperators.ADD);
      for (; i < e; i++) {
        s += a[i] * a[i];
      }
      if (Float.isFinite(s)) {
        total += s;
      } else { // squares beyond float's range: this block again, in double
        for (int j = b; j < e; j++) {
          total += (double) a[j] * a[j];
        }
      }
    }
    return total;
  }

  /** Σ a[i]² over the whole array, on all cores, in the same fixed order as one thread. */
  public static double sumSquares(float[] a) {
    double[] part = new double[tasks(a.length)];
    chunks(a.length, (from, to) -> part[from / TASK] = sumSquares(a, from, to));
    double s = 0;
    for (double p : part) {
      s += p;
    }
    return s;
  }

  public static int tasks(int n) {
    return (n + TASK - 1) / TASK;
  }

  /** A piece of work on values [from, to). */
  @FunctionalInterface
  public interface Range {
    void run(int from, int to);
  }

  /**
   * Runs {@code body} on the fixed chunks [k·TASK, min(n, (k+1)·TASK)) of [0, n), on every core;
   * chunk k starts at a multiple of {@link #TASK} (so of fp16's transport block), whatever the core count.
   */
  public static void chunks(int n, Range body) {
    parallel(tasks(n), k -> body.run(k * TASK, Math.min(n, (k + 1) * TASK)));
  }

  /** Runs {@code task} for 0..tasks-1 on the common fork-join pool (every core), the caller included. */
  public static void parallel(int tasks, IntConsumer task) {
    if (tasks == 1) {
      task.accept(0);
    } else {
      IntStream.range(0, tasks).parallel().forEach(task);
    }
  }
}
