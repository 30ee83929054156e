package io.lorafleet.worker.quant;

/**
 * bitsandbytes' blockwise quantization on the host: the NF4 code (QLoRA, arXiv 2305.14314,
 * appendix E), the signed 8-bit "dynamic" map that double quantization stores the absmax values
 * with, and the shared blockwise rule. The rule is that of bitsandbytes' kQuantizeBlockwise
 * (csrc/kernels.cu) and its torch fallback (backends/default/ops.py):
 * <ol>
 *   <li>absmax = max|x| of each block of {@code blocksize} consecutive values (the last may be short);
 *   <li>each value is multiplied by the fp32 reciprocal 1/max(absmax, 1e-38) and clamped to [-1, 1]
 *       (an all-zero block scales to zeros);
 *   <li>the code is the bucket of the sorted code table whose bounds are the fp32 midpoints of
 *       neighbouring codes; a value exactly on a bound takes the lower code ({@code torch.bucketize},
 *       right=False).
 * </ol>
 * The CUDA kernel multiplies by the reciprocal in every block; the torch fallback divides in a short
 * last block. lorafleet follows the kernel, which is what produced the checkpoints users hold.
 */
public final class Nf4 {
  /** bitsandbytes' NF4 code (functional.py get_4bit_type("nf4"), and backends/utils.py _NF4_QUANT_TABLE). */
  public static final float[] CODE = {
      -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f, -0.18477343022823334f,
      -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
      0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

  /** The NF4 code of 0.0: the nibble of an all-zero block and of an odd tail's padding. */
  public static final int ZERO = 7;

  /** bitsandbytes' default blocksize for 4-bit weights, and for the absmax values under double quantization. */
  public static final int BLOCKSIZE = 64;
  public static final int NESTED_BLOCKSIZE = 256;

  private static final float MIN_ABSMAX = 1e-38f; // absmax.clamp(min=1e-38) before the reciprocal

  private Nf4() {}

  /** Values quantized blockwise: one code per value, one fp32 absmax per block. */
  public record Blockwise(byte[] codes, float[] absmax, int blocksize) {}

  /**
   * Quantizes {@code x} in blocks of {@code blocksize} against a sorted code table (16 or 256 entries).
   * Codes are returned one per byte, unpacked.
   */
  public static Blockwise quantize(float[] x, float[] code, int blocksize) {
    if (blocksize <= 0) {
      throw new IllegalArgumentException("blocksize must be > 0 but found " + blocksize);
    }
    float[] bounds = bounds(code);
    int blocks = (x.length + blocksize - 1) / blocksize;
    float[] absmax = new float[blocks];
    byte[] q = new byte[x.length];
    for (int b = 0; b < blocks; b++) {
      int from = b * blocksize;
      int to = Math.min(x.length, from + blocksize);
      float m = 0f;
      for (int i = from; i < to; i++) {
        m = Math.max(m, Math.abs(x[i]));
      }
      absmax[b] = m;
      float r = 1f / Math.max(m, MIN_ABSMAX);
      for (int i = from; i < to; i++) {
        q[i] = (byte) bucket(bounds, Math.min(1f, Math.max(-1f, x[i] * r)));
      }
    }
    return new Blockwise(q, absmax, blocksize);
  }

  /** The bucket bounds of a sorted code table: (code[i] + code[i+1]) / 2 in fp32. */
  static float[] bounds(float[] code) {
    float[] b = new float[code.length - 1];
    for (int i = 0; i < b.length; i++) {
      if (!(code[i] < code[i + 1])) {
        throw new IllegalArgumentException("a code table must be strictly increasing but entry " + (i + 1) + " is " + code[i + 1]
            + " after " + code[i]);
      }
      b[i] = (code[i] + code[i + 1]) / 2f;
    }
    return b;
  }

  /** torch.bucketize(v, bounds, right=False): the first i with v <= bounds[i], or bounds.length. */
  static int bucket(float[] bounds, float v) {
    int lo = 0;
    int hi = bounds.length;
    while (lo < hi) {
      int mid = (lo + hi) >>> 1;
      if (bounds[mid] < v) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return lo;
  }

  /**
   * Two 4-bit codes a byte, the first in the high nibble (bitsandbytes' packing); an odd count is
   * padded with the code of 0.0, as bitsandbytes pads the value 0.0 before quantizing.
   */
  public static byte[] pack(byte[] codes) {
    byte[] out = new byte[(codes.length + 1) / 2];
    for (int i = 0; i < out.length; i++) {
      int hi = codes[2 * i];
      int lo = 2 * i + 1 < codes.length ? codes[2 * i + 1] : ZERO;
      out[i] = (byte) (hi << 4 | lo);
    }
    return out;
  }

  /** The code of element i of a packed array. */
  public static int nibble(byte[] packed, long i) {
    int b = packed[(int) (i >>> 1)] & 0xff;
    return (i & 1) == 0 ? b >>> 4 : b & 15;
  }

  /**
   * bitsandbytes' signed 8-bit dynamic map, create_dynamic_map(signed=True, max_exponent_bits=7,
   * total_bits=8), from its definition: for exponent i = 0..6, the midpoints of
   * linspace(0.1, 1, 2^i + 1) scaled by ±10^(i−6), then 0 and 1; 256 values, sorted.
   *
   * <p>linspace is torch's scalar rule (start + step·k below the halfway index, end − step·(n−1−k)
   * from it, in fp32). torch's vectorized CPU kernel rounds a few entries of the longer spaces
   * differently, by lane width (AVX2 or AVX-512), so tables made by bitsandbytes differ by machine
   * in the last bit of some entries. That is why the table is stored in every checkpoint
   * ({@code nested_quant_map}) and readers use the stored one.
   */
  public static float[] dynamicMap() {
    float[] scales = {1e-6f, 1e-5f, 1e-4f, 1e-3f, 1e-2f, 1e-1f, 1f}; // 10 ** (i - 6) as a Python number, cast to fp32 by the tensor op
    float[] out = new float[256];
    int n = 0;
    for (int i = 0; i < 7; i++) {
      float[] b = linspace(0.1f, 1f, (1 << i) + 1);
      for (int k = 0; k + 1 < b.length; k++) {
        float mean = (b[k] + b[k + 1]) / 2f;
        out[n++] = scales[i] * mean;
        out[n++] = -scales[i] * mean;
      }
    }
    out[n++] = 0f;
    out[n++] = 1f;
    if (n != 256) {
      throw new IllegalStateException("the dynamic map has " + n + " entries, expected 256");
    }
    java.util.Arrays.sort(out);
    return out;
  }

  static float[] linspace(float start, float end, int steps) {
    float step = (end - start) / (steps - 1);
    int halfway = steps / 2;
    float[] out = new float[steps];
    for (int k = 0; k < steps; k++) {
      out[k] = k < halfway ? start + step * k : end - step * (steps - k - 1);
    }
    return out;
  }
}
