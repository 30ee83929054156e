package io.lorafleet.driver.allreduce;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.OptionalLong;
import java.util.Random;
import org.junit.jupiter.api.Test;

class TransportTest {
  static float[] roundTrip(Transport t, float[] v) {
    byte[] b = new byte[(int) t.bytes(v.length)];
    t.encode(v, 0, v.length, b, 0);
    float[] out = new float[v.length];
    t.decode(b, 0, v.length, out, 0);
    return out;
  }

  @Test
  void everyHalfRoundTripsAndFloatsRoundToTheNearestEvenHalf() {
    for (int h = 0; h < 1 << 16; h++) {
      float f = Transport.halfToFloat(h);
      if (!Float.isNaN(f)) {
        assertEquals(h, Transport.toHalf(f), "half " + Integer.toHexString(h));
      }
    }
    Random rnd = new Random(5);
    for (int i = 0; i < 200_000; i++) {
      float f = (float) (rnd.nextGaussian() * Math.pow(2, rnd.nextInt(40) - 26));
      int h = Transport.toHalf(f);
      double got = Transport.halfToFloat(h);
      if (Double.isInfinite(got)) {
        assertTrue(Math.abs(f) >= 65520, f + " overflowed");
        continue;
      }
      for (int d : new int[] {-1, 1}) { // no neighbour is nearer; on a tie the even one wins
        int o = h + d;
        if ((o & 0x7c00) == 0x7c00 || (o & 0x7fff) == 0x7fff || ((h & 0x7fff) == 0 && d < 0)) {
          continue;
        }
        double other = Transport.halfToFloat(o);
        double a = Math.abs(f - got);
        double b = Math.abs(f - other);
        assertTrue(a < b || (a == b && (h & 1) == 0), f + " -> " + got + " but " + other + " is nearer");
      }
    }
  }

  @Test
  void boundsOfTheCompressedTransports() {
    Random rnd = new Random(9);
    int n = 5000; // blocks of 1024 and a partial block
    float[] v = new float[n];
    for (int i = 0; i < n; i++) {
      v[i] = (float) (rnd.nextGaussian() * Math.pow(10, rnd.nextInt(7) - 6)); // within a block: magnitudes over 6 decades
    }
    assertArrayEquals(v, roundTrip(Transport.FP32, v), 0f);
    float[] bf = roundTrip(Transport.BF16, v);
    float[] fp = roundTrip(Transport.FP16, v);
    for (int i = 0; i < n; i++) {
      assertTrue(Math.abs(bf[i] - v[i]) <= Math.abs(v[i]) * 0x1p-8, "bf16 " + v[i] + " -> " + bf[i]);
      float max = 0;
      for (int j = i / Transport.BLOCK * Transport.BLOCK; j < Math.min(n, (i / Transport.BLOCK + 1) * Transport.BLOCK); j++) {
        max = Math.max(max, Math.abs(v[j]));
      }
      double bound = Math.abs(v[i]) >= max * 0x1p-28 ? Math.abs(v[i]) * 0x1p-11 : max * 0x1p-39;
      assertTrue(Math.abs(fp[i] - v[i]) <= bound, "fp16 " + v[i] + " -> " + fp[i] + " (block max " + max + ")");
    }
    float[] special = {Float.NaN, Float.POSITIVE_INFINITY, 1e30f, -0f, 3f};
    for (Transport t : Transport.values()) {
      float[] r = roundTrip(t, special);
      assertTrue(Float.isNaN(r[0]) && r[1] == Float.POSITIVE_INFINITY, t + ": NaN and infinity travel as themselves");
    }
    float[] wide = roundTrip(Transport.FP16, new float[] {3f, 1e8f, 1e-30f});
    assertEquals(1e8f, wide[1], 1e8f * 0x1p-11, "a value far beyond fp16's range sets its block's scale: no overflow");
    assertEquals(3f, wide[0], 3f * 0x1p-11);
    assertEquals(0f, wide[2], "far below the block's largest value: flushed, within 2^-39 of it");
  }

  @Test
  void sizesAndNames() {
    for (Transport t : Transport.values()) {
      for (long n : new long[] {0, 1, 1023, 1024, 1025, 42_000_000}) {
        assertEquals(OptionalLong.of(n), t.values(t.bytes(n)), t + " " + n);
      }
    }
    assertEquals(2L * 2048 + 8, Transport.FP16.bytes(2048));
    assertEquals(OptionalLong.empty(), Transport.FP32.values(6));
    assertEquals(Transport.BF16, Transport.parse("bf16"));
    var e = assertThrows(IllegalArgumentException.class, () -> Transport.parse("int8"));
    assertTrue(e.getMessage().contains("--grad-transport must be fp32, bf16 or fp16 but found 'int8'"), e.getMessage());
  }
}
