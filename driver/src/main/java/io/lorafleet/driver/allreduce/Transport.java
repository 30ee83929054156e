package io.lorafleet.driver.allreduce;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Locale;

/**
 * How gradients travel from the workers to the driver ({@code --grad-transport}). The driver always
 * decodes to fp32 and accumulates in fp32; the adapter it broadcasts is always fp32.
 *
 * <ul>
 *   <li>{@code fp32}: exact, 4 bytes a value (the default).
 *   <li>{@code bf16}: fp32's range, 8 significant bits, round to nearest even: 2 bytes a value and a
 *       relative error of at most 2⁻⁸ per value.
 *   <li>{@code fp16}: 11 significant bits but a narrow range, so values travel in blocks of
 *       {@value #BLOCK}, each with a power-of-two scale that puts its largest magnitude in [2¹⁴, 2¹⁵):
 *       no overflow, a relative error of at most 2⁻¹¹ for values down to 2⁻²⁸ of their block's largest
 *       magnitude M and an absolute error of at most 2⁻³⁹·M below that; 2 bytes a value plus 4 a block.
 * </ul>
 * NaN and the infinities travel as themselves, so the driver still refuses them by tensor.
 */
public enum Transport {
  FP32,
  BF16,
  FP16;

  /** fp16 values per scaled block; chunks of a streamed message are multiples of it. */
  public static final int BLOCK = 1024;
  private static final float[] HALF = new float[1 << 16];

  static {
    for (int h = 0; h < HALF.length; h++) {
      HALF[h] = halfToFloat(h);
    }
  }

  public static Transport parse(String s) {
    try {
      return valueOf(s.trim().toUpperCase(Locale.ROOT));
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException("--grad-transport must be fp32, bf16 or fp16 but found '" + s + "'");
    }
  }

  public String flag() {
    return name().toLowerCase(Locale.ROOT);
  }

  /** Bytes on the wire for values [0, n). */
  public long bytes(long n) {
    return offset(n);
  }

  /** How many values {@code bytes} encode, if a whole number of values does. */
  public java.util.OptionalLong values(long bytes) {
    if (bytes < 0) {
      return java.util.OptionalLong.empty();
    }
    long n = switch (this) {
      case FP32 -> bytes / 4;
      case BF16 -> bytes / 2;
      case FP16 -> {
        long blocks = (bytes + 2L * BLOCK + 3) / (2L * BLOCK + 4);
        yield (bytes - 4 * blocks) / 2;
      }
    };
    return n >= 0 && bytes(n) == bytes ? java.util.OptionalLong.of(n) : java.util.OptionalLong.empty();
  }

  /** Where value i starts in an encoded stream (i a multiple of {@link #BLOCK} for fp16, or the end). */
  public long offset(long i) {
    return switch (this) {
      case FP32 -> 4 * i;
      case BF16 -> 2 * i;
      case FP16 -> 2 * i + 4 * ((i + BLOCK - 1) / BLOCK);
    };
  }

  /** Encodes src[from, from + n) into dst at off; from is a multiple of {@link #BLOCK} for fp16. */
  public void encode(float[] src, int from, int n, byte[] dst, int off) {
    ByteBuffer b = ByteBuffer.wrap(dst, off, dst.length - off).order(ByteOrder.LITTLE_ENDIAN);
    switch (this) {
      case FP32 -> b.asFloatBuffer().put(src, from, n);
      case BF16 -> {
        for (int i = 0; i < n; i++) {
          b.putShort((short) toBf16(src[from + i]));
        }
      }
      case FP16 -> {
        for (int s = 0; s < n; s += BLOCK) {
          int e = Math.min(n, s + BLOCK);
          float max = 0;
          for (int i = s; i < e; i++) {
            max = Math.max(max, Math.abs(src[from + i])); // NaN and infinity leave the scale at 1 below
          }
          int k = max > 0 && Float.isFinite(max) ? Math.max(-126, Math.min(127, 14 - Math.getExponent(max))) : 0;
          float scale = Math.scalb(1f, k);
          b.putFloat(scale);
          for (int i = s; i < e; i++) {
            b.putShort((short) toHalf(src[from + i] * scale));
          }
        }
      }
    }
  }

  /** Decodes n values from src at off into dst[to, to + n); the inverse of {@link #encode}. */
  public void decode(byte[] src, int off, int n, float[] dst, int to) {
    ByteBuffer b = ByteBuffer.wrap(src, off, src.length - off).order(ByteOrder.LITTLE_ENDIAN);
    switch (this) {
      case FP32 -> b.asFloatBuffer().get(dst, to, n);
      case BF16 -> {
        for (int i = 0; i < n; i++) {
          dst[to + i] = Float.intBitsToFloat((b.getShort() & 0xffff) << 16);
        }
      }
      case FP16 -> {
        for (int s = 0; s < n; s += BLOCK) {
          int e = Math.min(n, s + BLOCK);
          float inverse = 1f / b.getFloat(); // a power of two: exact
          for (int i = s; i < e; i++) {
            dst[to + i] = HALF[b.getShort() & 0xffff] * inverse;
          }
        }
      }
    }
  }

  /** fp32 to bf16 bits, round to nearest even (NaN stays NaN). */
  static int toBf16(float f) {
    int bits = Float.floatToRawIntBits(f);
    if (Float.isNaN(f)) {
      return (bits >>> 16) | 0x40;
    }
    return (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16;
  }

  /** fp32 to IEEE half bits, round to nearest even, overflowing to infinity. */
  static int toHalf(float f) {
    int bits = Float.floatToRawIntBits(f);
    int sign = (bits >>> 16) & 0x8000;
    int abs = bits & 0x7fffffff;
    if (abs >= 0x7f800000) {
      return sign | 0x7c00 | (abs > 0x7f800000 ? 0x200 : 0);
    }
    if (abs >= 0x477ff000) { // 65520 and above round to infinity
      return sign | 0x7c00;
    }
    if (abs < 0x38800000) { // below 2⁻¹⁴: a subnormal half; |f|·2²⁴ is exact and rint rounds half to even
      return sign | (int) Math.rint(Math.abs(f) * 0x1p24f);
    }
    int mant = abs & 0x7fffff;
    int h = ((((abs >>> 23) - 127 + 15)) << 10) | (mant >>> 13);
    int rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1) == 1)) {
      h++; // a carry into the exponent is the right answer
    }
    return sign | h;
  }

  static float halfToFloat(int h) {
    int sign = (h & 0x8000) << 16;
    int e = (h >>> 10) & 0x1f;
    int m = h & 0x3ff;
    if (e == 0) {
      float v = m * 0x1p-24f;
      return sign != 0 ? -v : v;
    }
    if (e == 31) {
      return Float.intBitsToFloat(sign | 0x7f800000 | (m << 13));
    }
    return Float.intBitsToFloat(sign | ((e - 15 + 127) << 23) | (m << 13));
  }
}
