package io.lorafleet.worker.safetensors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SafetensorsTest {
  @TempDir Path tmp;

  /** A file with a hand-written header and {@code dataBytes} bytes of data. */
  Path raw(String header, int dataBytes) throws Exception {
    byte[] h = header.getBytes(StandardCharsets.UTF_8);
    ByteBuffer b = ByteBuffer.allocate(8 + h.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
    b.putLong(h.length).put(h);
    Path f = tmp.resolve("t" + System.nanoTime() + ".safetensors");
    Files.write(f, b.array());
    return f;
  }

  void rejects(Path f, String... fragments) {
    SafetensorsException e = assertThrows(SafetensorsException.class, () -> SafetensorsReader.open(f));
    assertTrue(e.getMessage().contains(f.toString()), e.getMessage());
    for (String s : fragments) {
      assertTrue(e.getMessage().contains(s), "'" + s + "' missing from: " + e.getMessage());
    }
  }

  @Test
  void roundTripWithAllFloatWidths() throws Exception {
    Path f = tmp.resolve("m.safetensors");
    float[] v = {1f, -2.5f, 0.333f, 65504f};
    ByteBuffer bf = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
    ByteBuffer h = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
    for (float x : v) {
      bf.putShort(Half.floatToBf16(x));
      h.putShort(Half.floatToF16(x));
    }
    SafetensorsWriter.write(f, Map.of("a", Tensor.ofFloats(v, 2, 2), "b", new Tensor(DType.BF16, new long[] {4}, bf.array()),
        "c", new Tensor(DType.F16, new long[] {4}, h.array())), Map.of("format", "pt"));
    SafetensorsReader r = SafetensorsReader.open(f);
    assertEquals("pt", r.metadata().get("format"));
    assertArrayEquals(v, r.read("a").toFloatArray());
    float[] b = r.read("b").toFloatArray();
    float[] c = r.read("c").toFloatArray();
    for (int i = 0; i < v.length; i++) {
      assertEquals(v[i], b[i], Math.abs(v[i]) / 128);
      assertEquals(v[i], c[i], Math.abs(v[i]) / 1024);
    }
    assertEquals(0, (Files.size(f) - 8 - r.tensors().values().stream().mapToLong(TensorInfo::byteSize).sum()) % 8, "header padded to 8");
  }

  @Test
  void corruptFilesAreRejectedWithTheirReason() throws Exception {
    Path small = tmp.resolve("small.safetensors");
    Files.write(small, new byte[5]);
    rejects(small, "truncated");
    rejects(raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4), "'a'", "out of range");
    ByteBuffer huge = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(200_000_000L);
    Path big = tmp.resolve("big.safetensors");
    Files.write(big, huge.array());
    rejects(big, "header length 200000000");
    ByteBuffer past = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(1000L);
    Path p = tmp.resolve("past.safetensors");
    Files.write(p, past.array());
    rejects(p, "exceeds the file size");
    rejects(raw("{not json", 0), "not valid JSON");
    rejects(raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12), "'b'", "overlaps tensor 'a'");
    rejects(raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8), "'a'", "needs 12 bytes");
    rejects(raw("{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8), "'a'", "unsupported dtype 'Q4'");
    rejects(raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12), "hole", "'a'");
    rejects(raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 10), "trailing bytes");
    rejects(raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8), "'a'", "non-negative");
  }

  @Test
  void headersAreReadAsStrictlyAsTheReferenceReaderReadsThem() throws Exception {
    String a = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    // the reference writer pads the header with spaces: valid
    assertEquals(2, SafetensorsReader.open(raw(a + "     ", 8)).read("a").toFloatArray().length);
    rejects(raw(a + "  x", 8), "not valid JSON");
    rejects(raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.9],\"data_offsets\":[0,8]}}", 8), "'a'", "shape [2.9] must hold non-negative integers");
    rejects(raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0.0,8]}}", 8), "'a'", "two integers");
    rejects(raw(a.substring(0, a.length() - 1) + ",\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8), "Duplicate field 'a'");
    // element count x dtype size overflowing 64 bits is refused, never wrapped into a small allocation
    rejects(raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8), "'a'", "more elements than 2^63");
    rejects(raw("{\"a\":{\"dtype\":\"F64\",\"shape\":[1152921504606846976],\"data_offsets\":[0,8]}}", 8), "'a'", "more than 2^63 bytes");
    // invalid UTF-8 in the header
    byte[] h = a.getBytes(StandardCharsets.UTF_8);
    h[3] = (byte) 0xff;
    ByteBuffer b = ByteBuffer.allocate(8 + h.length + 8).order(ByteOrder.LITTLE_ENDIAN);
    b.putLong(h.length).put(h);
    Path f = tmp.resolve("utf8.safetensors");
    Files.write(f, b.array());
    rejects(f, "not valid UTF-8");
  }

  @Test
  void halfConversionsAreExactOnRepresentableValues() {
    for (float f : new float[] {0f, -0f, 1f, 0.5f, 65504f, 6.1035156e-5f, 5.9604645e-8f, -3.75f}) {
      assertEquals(f, Half.f16ToFloat(Half.floatToF16(f)), 0f, Arrays.toString(new float[] {f}));
    }
    assertTrue(Float.isInfinite(Half.f16ToFloat(Half.floatToF16(1e6f))));
  }
}
