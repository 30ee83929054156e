package io.lorafleet.worker.quant;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.worker.QuantFixtures;
import io.lorafleet.worker.model.Djl;
import io.lorafleet.worker.safetensors.DType;
import io.lorafleet.worker.safetensors.Half;
import io.lorafleet.worker.safetensors.Tensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.HashMap;
import java.util.Map;
import java.util.Optional;
import org.junit.jupiter.api.Test;

/**
 * GPTQ INT4 dequantization against golden values derived by hand from AutoGPTQ's format: qweight
 * [in/8, out] with 8 codes an int32 along the input, least significant first; qzeros [groups,
 * out/8] packed along the output; W[o, i] = scales[g, o]·(q[i, o] − zero[g, o]) in fp16, g = g_idx[i],
 * zero = stored + 1 (v1, no modulo) or stored (gptq_v2).
 */
class GptqTensorTest {
  static final int OUT = 8;
  static final int IN = 16;

  /** A [8, 16] weight in 2 groups of 8 columns, with hand-placed codes, zeros and scales. */
  static Map<String, Tensor> tensors(int[] gIdx) {
    int[][] q = new int[IN][OUT]; // q[i][o]
    for (int i = 0; i < IN; i++) {
      for (int o = 0; o < OUT; o++) {
        q[i][o] = (i + 3 * o) % 16;
      }
    }
    q[8][2] = 0;
    int[][] z = new int[2][OUT]; // stored zero nibbles z[g][o]
    for (int g = 0; g < 2; g++) {
      for (int o = 0; o < OUT; o++) {
        z[g][o] = (o + 4 * g) % 16;
      }
    }
    z[1][3] = 15; // v1: zero 16, the format's defect (a true zero of 0, stored as 0 − 1 wrapped to 15)
    z[1][2] = 14;
    float[][] s = new float[2][OUT];
    for (int g = 0; g < 2; g++) {
      for (int o = 0; o < OUT; o++) {
        s[g][o] = 0.5f + 0.25f * g + o / 8f; // fp16-exact
      }
    }
    s[1][2] = 1.0009765625f; // 1 + 2^-10, fp16-exact
    int[] qweight = new int[IN / 8 * OUT];
    for (int i = 0; i < IN; i++) {
      for (int o = 0; o < OUT; o++) {
        qweight[(i / 8) * OUT + o] |= q[i][o] << (4 * (i % 8));
      }
    }
    int[] qzeros = new int[2];
    for (int g = 0; g < 2; g++) {
      for (int o = 0; o < OUT; o++) {
        qzeros[g] |= z[g][o] << (4 * o);
      }
    }
    ByteBuffer sb = ByteBuffer.allocate(2 * OUT * 2).order(ByteOrder.LITTLE_ENDIAN);
    for (int g = 0; g < 2; g++) {
      for (int o = 0; o < OUT; o++) {
        sb.putShort(Half.floatToF16(s[g][o]));
      }
    }
    Map<String, Tensor> t = new HashMap<>();
    t.put("m.qweight", QuantFixtures.ints(qweight, IN / 8, OUT));
    t.put("m.qzeros", QuantFixtures.ints(qzeros, 2, 1));
    t.put("m.scales", new Tensor(DType.F16, new long[] {2, OUT}, sb.array()));
    if (gIdx != null) {
      t.put("m.g_idx", QuantFixtures.ints(gIdx, IN));
    }
    return t;
  }

  static GptqTensor read(Map<String, Tensor> t, GptqTensor.Config c) {
    return GptqTensor.fromTensors("m", k -> Optional.ofNullable(t.get(k)), OUT, IN, c, "q.safetensors");
  }

  static float w(float[] w, int o, int i) {
    return w[o * IN + i];
  }

  @Test
  void v1DequantizationGolden() {
    float[] w = read(tensors(null), new GptqTensor.Config(4, 8, false, false, false)).dequantize();
    // W[0, 0]: q = 0, group 0, stored zero 0 → zero 1, scale 0.5: 0.5·(0 − 1) = −0.5
    assertEquals(-0.5f, w(w, 0, 0));
    // W[1, 5]: q = (5 + 3) % 16 = 8, group 0, stored 1 → zero 2, scale 0.5 + 1/8: 0.625·6 = 3.75
    assertEquals(3.75f, w(w, 1, 5));
    // W[3, 9]: q = (9 + 9) % 16 = 2, group 1, stored 15 → zero 16 (no modulo), scale 0.75 + 3/8: 1.125·(2 − 16) = −15.75
    assertEquals(-15.75f, w(w, 3, 9));
    // W[2, 8]: q = 0, group 1, stored 14 → zero 15, scale 1 + 2^-10: −15 − 15·2^-10 = −15.0146484375 is not an fp16;
    // the fp16 spacing in [8, 16) is 2^-7, so it rounds to −15.015625
    assertEquals(-15.015625f, w(w, 2, 8));
    // W[7, 15]: q = (15 + 21) % 16 = 4, group 1, stored (7 + 4) % 16 = 11 → zero 12, scale 0.75 + 7/8: 1.625·(4 − 12) = −13
    assertEquals(-13f, w(w, 7, 15));
  }

  @Test
  void v2ZerosAreStoredWithoutTheOffset() {
    float[] w = read(tensors(null), new GptqTensor.Config(4, 8, false, false, true)).dequantize();
    assertEquals(0f, w(w, 0, 0)); // 0.5·(0 − 0)
    assertEquals(4.375f, w(w, 1, 5)); // 0.625·(8 − 1)
    assertEquals(1.125f * (2 - 15), w(w, 3, 9));
  }

  @Test
  void descActPermutationPicksEachColumnsGroup() {
    int[] gIdx = new int[IN];
    for (int i = 0; i < IN; i++) {
      gIdx[i] = i % 2; // alternating groups, as an act-order permutation leaves them
    }
    float[] w = read(tensors(gIdx), new GptqTensor.Config(4, 8, true, false, false)).dequantize();
    // W[1, 5]: column 5 is in group 1 now: q = 8, stored (1 + 4) % 16 = 5 → zero 6, scale 0.75 + 1/8 = 0.875: 0.875·2 = 1.75
    assertEquals(1.75f, w(w, 1, 5));
    // W[1, 4]: column 4 in group 0: q = 7, stored 1 → zero 2, scale 0.625: 0.625·5 = 3.125
    assertEquals(3.125f, w(w, 1, 4));
    // without g_idx the default i / group_size puts column 5 in group 0: 3.75 as in the v1 golden
    assertEquals(3.75f, w(read(tensors(null), new GptqTensor.Config(4, 8, true, false, false)).dequantize(), 1, 5));
  }

  @Test
  void oneGroupWhenGroupSizeIsMinusOne() {
    Map<String, Tensor> t = tensors(null);
    t.put("m.qzeros", QuantFixtures.ints(new int[] {0x76543210}, 1, 1)); // stored zero o for output o
    ByteBuffer sb = ByteBuffer.allocate(OUT * 2).order(ByteOrder.LITTLE_ENDIAN);
    for (int o = 0; o < OUT; o++) {
      sb.putShort(Half.floatToF16(0.25f));
    }
    t.put("m.scales", new Tensor(DType.F16, new long[] {1, OUT}, sb.array()));
    float[] w = read(t, new GptqTensor.Config(4, -1, false, true, false)).dequantize();
    // W[3, 12]: q = (12 + 9) % 16 = 5, zero 3 + 1: 0.25·1
    assertEquals(0.25f, w(w, 3, 12));
  }

  @Test
  void badPartsAndSettingsAreRefusedByName() {
    var e = assertThrows(IllegalArgumentException.class, () -> new GptqTensor.Config(8, 128, false, true, false));
    assertTrue(e.getMessage().contains("bits") && e.getMessage().contains("8"), e.getMessage());
    Map<String, Tensor> t = tensors(null);
    t.put("m.qweight", QuantFixtures.ints(new int[OUT], 1, OUT));
    e = assertThrows(IllegalArgumentException.class, () -> read(t, new GptqTensor.Config(4, 8, false, false, false)));
    assertTrue(e.getMessage().contains("m.qweight") && e.getMessage().contains("[1, 8]") && e.getMessage().contains("[2, 8]"), e.getMessage());
    int[] bad = new int[IN];
    bad[3] = 2;
    e = assertThrows(IllegalArgumentException.class, () -> read(tensors(bad), new GptqTensor.Config(4, 8, true, false, false)));
    assertTrue(e.getMessage().contains("g_idx") && e.getMessage().contains("column 3"), e.getMessage());
    ObjectNode cfg = new ObjectMapper().createObjectNode();
    cfg.putObject("quantization_config").put("quant_method", "gptq").put("bits", 4).put("checkpoint_format", "marlin");
    e = assertThrows(IllegalArgumentException.class, () -> QuantizedCheckpoint.of(cfg, "config.json"));
    assertTrue(e.getMessage().contains("checkpoint_format") && e.getMessage().contains("marlin"), e.getMessage());
    cfg.putObject("quantization_config").put("quant_method", "awq");
    e = assertThrows(IllegalArgumentException.class, () -> QuantizedCheckpoint.of(cfg, "config.json"));
    assertTrue(e.getMessage().contains("awq"), e.getMessage());
    cfg.putObject("quantization_config").put("quant_method", "bitsandbytes").put("load_in_4bit", true).put("bnb_4bit_quant_type", "fp4");
    e = assertThrows(IllegalArgumentException.class, () -> QuantizedCheckpoint.of(cfg, "config.json"));
    assertTrue(e.getMessage().contains("fp4"), e.getMessage());
  }

  @Test
  void deviceDequantizationEqualsTheHostDefinition() {
    int[] gIdx = new int[IN];
    for (int i = 0; i < IN; i++) {
      gIdx[i] = (i * 5 + 1) % 2;
    }
    for (int[] g : new int[][] {null, gIdx}) {
      GptqTensor t = read(tensors(g), new GptqTensor.Config(4, 8, g != null, false, false));
      try (NDManager m = Djl.newManager(Device.cpu(), "gptq-test"); NDManager scope = m.newSubManager()) {
        var w = t.upload(m).dequantize(scope, DataType.FLOAT32);
        assertArrayEquals(new long[] {OUT, IN}, w.getShape().getShape());
        assertArrayEquals(t.dequantize(), w.toFloatArray());
      }
    }
  }
}
