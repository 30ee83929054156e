package io.lorafleet.worker.quant;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.lorafleet.worker.model.Djl;
import io.lorafleet.worker.safetensors.DType;
import io.lorafleet.worker.safetensors.Tensor;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import java.util.Optional;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * NF4 and double quantization against golden values derived by hand from bitsandbytes' definitions
 * (functional.py quantize_4bit / create_dynamic_map, backends/default/ops.py, csrc/kernels.cu
 * kQuantizeBlockwise). Each derivation is written next to its assertion.
 */
class Nf4Test {
  /** The NF4 code as the issue and bitsandbytes' get_4bit_type("nf4") list it. */
  static final double[] NF4 = {-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
      -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224, 0.44070982933044434,
      0.5626170039176941, 0.7229568362236023, 1.0};

  @Test
  void codeTableAndBucketBounds() {
    for (int i = 0; i < 16; i++) {
      assertEquals((float) NF4[i], Nf4.CODE[i], "code " + i);
    }
    assertEquals(0f, Nf4.CODE[Nf4.ZERO]);
    float[] bounds = Nf4.bounds(Nf4.CODE);
    for (int i = 0; i < 15; i++) {
      assertEquals((Nf4.CODE[i] + Nf4.CODE[i + 1]) / 2f, bounds[i]);
      // torch.bucketize(right=False): a value exactly on bound i takes code i (the lower), the next float up takes i + 1
      assertEquals(i, Nf4.bucket(bounds, bounds[i]));
      assertEquals(i + 1, Nf4.bucket(bounds, Math.nextUp(bounds[i])));
    }
    assertEquals(0, Nf4.bucket(bounds, -1f));
    assertEquals(15, Nf4.bucket(bounds, 1f));
    assertEquals(7, Nf4.bucket(bounds, 0f));
  }

  @Test
  void oneShortBlockPacksHighNibbleFirstAndPadsWithTheCodeOfZero() {
    // absmax = 2, 1/absmax = 0.5 exactly, so the scaled values are exact:
    //   2 → 1 → 15;  −2 → −1 → 0;  0 → 7;
    //   1 → 0.5, between 0.4407 (12) and 0.5626 (13), midpoint 0.5017 → 12;
    //   −0.5 → −0.25, between −0.2844 (4) and −0.1848 (5), midpoint −0.2346 → 4;
    //   0.1 → 0.05, above the midpoint 0.0398 of 0 (7) and 0.0796 (8) → 8;
    //   0.17 → 0.085, below the midpoint 0.1203 of 0.0796 (8) and 0.1609 (9) → 8.
    // Codes 15 0 | 7 12 | 4 8 | 8 and the padding 7: bytes 0xF0 0x7C 0x48 0x87.
    Nf4Tensor t = Nf4Tensor.quantize(new float[] {2f, -2f, 0f, 1f, -0.5f, 0.1f, 0.17f}, new long[] {1, 7}, false, "float32");
    assertArrayEquals(new byte[] {(byte) 0xF0, 0x7C, 0x48, (byte) 0x87}, t.packed());
    assertArrayEquals(new float[] {2f}, t.absmax().values());
    float[] c = Nf4.CODE;
    assertArrayEquals(new float[] {2 * c[15], 2 * c[0], 0f, 2 * c[12], 2 * c[4], 2 * c[8], 2 * c[8]}, t.dequantize());
  }

  @Test
  void blocksOfSixtyFourWithAnAllZeroBlockAndAShortLastBlock() {
    float[] x = new float[130]; // blocks [0, 64) all zero, [64, 128), and a short block [128, 130)
    for (int i = 64; i < 128; i++) {
      x[i] = (i - 96) / 32f; // −1 … 0.96875; absmax 1
    }
    x[128] = 3f;
    x[129] = -1.5f;
    Nf4Tensor t = Nf4Tensor.quantize(x, new long[] {10, 13}, false, "float16");
    // the all-zero block keeps absmax 0 and scales by 1/1e-38 to zeros: every code is 7 (0x77)
    for (int i = 0; i < 32; i++) {
      assertEquals((byte) 0x77, t.packed()[i]);
    }
    // the short block: absmax 3, 1/3f = 0.33333334f; 3 · 0.33333334f rounds to 1.0 → 15, −1.5 · 0.33333334f rounds to −0.5 → 2
    // (−0.5 lies below the midpoint −0.4600 of −0.5251 (2) and −0.3949 (3))
    assertEquals((byte) 0xF2, t.packed()[64]);
    assertArrayEquals(new float[] {0f, 1f, 3f}, t.absmax().values());
    // the middle block: x = −1 → code 0, x = 0 (i = 96) → code 7
    assertEquals(0, Nf4.nibble(t.packed(), 64));
    assertEquals(7, Nf4.nibble(t.packed(), 96));
    float[] d = t.dequantize();
    for (int i = 0; i < 64; i++) {
      assertEquals(0f, d[i]);
    }
  }

  @Test
  void quantizationIsTheNearestCodeOfTheScaledValue() {
    // against a direct argmin over |v − code| (no value of these seeds lies within 1e-6 of a bound)
    Random rng = new Random(3);
    float[] x = new float[64 * 40 + 17];
    for (int i = 0; i < x.length; i++) {
      x[i] = (float) rng.nextGaussian();
    }
    Nf4Tensor t = Nf4Tensor.quantize(x, new long[] {1, x.length}, false, "float32");
    float[] absmax = t.absmax().values();
    for (int i = 0; i < x.length; i++) {
      float v = x[i] * (1f / absmax[i / 64]);
      int best = 0;
      for (int k = 1; k < 16; k++) {
        if (Math.abs(v - Nf4.CODE[k]) < Math.abs(v - Nf4.CODE[best])) {
          best = k;
        }
      }
      assertEquals(best, Nf4.nibble(t.packed(), i), "element " + i);
    }
  }

  @Test
  void dynamicMapFromItsDefinition() {
    float[] map = Nf4.dynamicMap();
    assertEquals(256, map.length);
    for (int i = 1; i < 256; i++) {
      assertTrue(map[i - 1] < map[i], "sorted and distinct at " + i);
    }
    // 127 negative entries, 0, and 127 positive ones up to 1.0 (appended by definition)
    assertEquals(0f, map[127]);
    assertEquals(1f, map[255]);
    // the smallest magnitude: exponent 0, linspace(0.1, 1, 2) = [0.1, 1], mean 0.55, times 1e-6
    assertEquals(1e-6f * ((0.1f + 1f) / 2f), map[128]);
    assertEquals(-map[128], map[126]);
    // the largest below 1: exponent 6, linspace(0.1, 1, 65): step 0.9/64, last pair (1 − step, 1), times 1
    float step = (1f - 0.1f) / 64;
    assertEquals(((1f - step) + 1f) / 2f, map[254]);
    assertEquals(-map[254], map[0]);
  }

  @Test
  void doubleQuantizationGolden() {
    // three blocks with absmax 1, 2 and 3: offset = mean = 2, centred [−1, 0, 1] in one nested block
    // with absmax2 = 1; −1 lies below the first bound and takes code 0 (the map's minimum, −map[254]),
    // 0 is code 127 and 1 is code 255. Dequantized: map[0]·1 + 2, 2, 3.
    float[] x = new float[192];
    x[0] = 1f;
    x[64] = -2f;
    x[130] = 3f;
    Nf4Tensor t = Nf4Tensor.quantize(x, new long[] {3, 64}, true, "float32");
    Nf4Tensor.Nested n = (Nf4Tensor.Nested) t.absmax();
    assertEquals(2f, n.offset());
    assertArrayEquals(new float[] {1f}, n.nestedAbsmax());
    assertArrayEquals(new byte[] {0, 127, (byte) 255}, n.codes());
    float[] map = Nf4.dynamicMap();
    assertArrayEquals(new float[] {map[0] * 1f + 2f, 2f, 3f}, n.values());
    assertEquals(256, n.nestedBlocksize());
  }

  @Test
  void doubleQuantizationOverManyNestedBlocks() {
    // 300 blocks: nested blocks of 256 and 44, each with its own absmax2; every dequantized absmax is
    // within half a code step of the true one
    Random rng = new Random(9);
    float[] x = new float[300 * 64];
    for (int i = 0; i < x.length; i++) {
      x[i] = (float) (rng.nextGaussian() * (1 + i / 64 % 7));
    }
    Nf4Tensor plain = Nf4Tensor.quantize(x, new long[] {150, 128}, false, "float32");
    Nf4Tensor dq = Nf4Tensor.quantize(x, new long[] {150, 128}, true, "float32");
    float[] exact = plain.absmax().values();
    float[] approx = dq.absmax().values();
    Nf4Tensor.Nested n = (Nf4Tensor.Nested) dq.absmax();
    assertEquals(2, n.nestedAbsmax().length);
    double mean = 0;
    for (float a : exact) {
      mean += a;
    }
    assertEquals((float) (mean / exact.length), n.offset());
    for (int i = 0; i < exact.length; i++) {
      assertEquals(exact[i], approx[i], 0.02 * n.nestedAbsmax()[i / 256], "absmax " + i);
    }
    assertArrayEquals(plain.packed(), dq.packed(), "the 4-bit codes do not depend on how absmax is stored");
    // 4 bits + 8/64 + 32/(64·256) per parameter, and the tables
    assertEquals(x.length / 2 + 300 + 4 * 2 + 4 * 256 + 4 + 64, dq.bytes());
  }

  @Test
  void tensorsRoundTripInBitsandbytesLayout() throws Exception {
    Random rng = new Random(4);
    float[] x = new float[5 * 13]; // odd count, short last block
    for (int i = 0; i < x.length; i++) {
      x[i] = (float) rng.nextGaussian();
    }
    for (boolean nested : new boolean[] {false, true}) {
      Nf4Tensor t = Nf4Tensor.quantize(x, new long[] {5, 13}, nested, "bfloat16");
      String key = "model.layers.0.mlp.up_proj.weight";
      Map<String, Tensor> parts = t.toTensors(key);
      assertEquals(DType.U8, parts.get(key).dtype());
      assertArrayEquals(new long[] {33, 1}, parts.get(key).shape());
      assertEquals(nested ? DType.U8 : DType.F32, parts.get(key + ".absmax").dtype());
      assertArrayEquals(new long[] {2}, parts.get(key + ".absmax").shape());
      assertArrayEquals(new long[] {16}, parts.get(key + ".quant_map").shape());
      assertEquals(nested, parts.containsKey(key + ".nested_absmax"));
      assertEquals(nested, parts.containsKey(key + ".nested_quant_map"));
      JsonNode state = new ObjectMapper().readTree(new String(parts.get(key + ".quant_state.bitsandbytes__nf4").data(), StandardCharsets.UTF_8));
      assertEquals("nf4", state.get("quant_type").asText());
      assertEquals(64, state.get("blocksize").asInt());
      assertEquals("bfloat16", state.get("dtype").asText());
      assertEquals("[5,13]", state.get("shape").toString());
      assertEquals(nested, state.has("nested_offset"));
      Nf4Tensor back = Nf4Tensor.fromTensors(key, k -> Optional.ofNullable(parts.get(k)), new long[] {5, 13}, "test.safetensors");
      assertArrayEquals(t.dequantize(), back.dequantize());
      var e = assertThrows(IllegalArgumentException.class,
          () -> Nf4Tensor.fromTensors(key, k -> Optional.ofNullable(parts.get(k)), new long[] {13, 5}, "test.safetensors"));
      assertTrue(e.getMessage().contains("test.safetensors") && e.getMessage().contains("[5, 13]") && e.getMessage().contains("[13, 5]"),
          e.getMessage());
      Map<String, Tensor> broken = new HashMap<>(parts);
      broken.put(key + ".quant_map", Tensor.ofFloats(new float[8], 8));
      e = assertThrows(IllegalArgumentException.class, () -> Nf4Tensor.fromTensors(key, k -> Optional.ofNullable(broken.get(k)), new long[] {5, 13}, "f"));
      assertTrue(e.getMessage().contains(key + ".quant_map") && e.getMessage().contains("[8]") && e.getMessage().contains("[16]"), e.getMessage());
    }
  }

  @Test
  void deviceDequantizationEqualsTheHostDefinition() {
    Random rng = new Random(5);
    for (long[] shape : new long[][] {{5, 13}, {150, 128}, {3, 64}}) {
      float[] x = new float[(int) (shape[0] * shape[1])];
      for (int i = 0; i < x.length; i++) {
        x[i] = (float) rng.nextGaussian();
      }
      for (boolean nested : new boolean[] {false, true}) {
        Nf4Tensor t = Nf4Tensor.quantize(x, shape, nested, "float32");
        try (NDManager m = Djl.newManager(Device.cpu(), "nf4-test"); NDManager scope = m.newSubManager()) {
          QuantizedLinear q = t.upload(m);
          var w = q.dequantize(scope, DataType.FLOAT32);
          assertArrayEquals(shape, w.getShape().getShape());
          assertArrayEquals(t.dequantize(), w.toFloatArray());
          assertEquals(DataType.FLOAT64, q.dequantize(scope, DataType.FLOAT64).getDataType());
        }
      }
    }
  }
}
