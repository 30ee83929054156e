package io.lorafleet.worker.safetensors;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * Reads a safetensors file and validates it fully before any tensor is handed out.
 *
 * <p>Layout (https://github.com/huggingface/safetensors): an 8-byte little-endian header length N,
 * N bytes of UTF-8 JSON mapping tensor names to {dtype, shape, data_offsets} plus an optional
 * {@code __metadata__} string map, then the data section. Offsets are relative to the data start;
 * the tensors must tile it exactly, with no holes or overlaps, and each byte range must equal
 * numel × dtype size. Every violation throws {@link SafetensorsException} naming the file and tensor.
 */
public final class SafetensorsReader {
  /** The reference implementation's cap on the header size. */
  public static final long MAX_HEADER_BYTES = 100_000_000L;

  // duplicate keys are refused (the reference's serde map keeps one silently; a file that names a
  // tensor twice is ambiguous either way), and so is anything but whitespace after the object
  private static final ObjectMapper JSON = new ObjectMapper()
      .enable(com.fasterxml.jackson.core.JsonParser.Feature.STRICT_DUPLICATE_DETECTION)
      .enable(com.fasterxml.jackson.databind.DeserializationFeature.FAIL_ON_TRAILING_TOKENS);

  /** Reads bytes [pos, pos + buf.remaining()) of the file into buf: a local channel, or a remote filesystem's positioned read. */
  @FunctionalInterface
  public interface Ranges {
    void read(long pos, ByteBuffer buf) throws IOException;
  }

  private final String file;
  private final Ranges ranges;
  private final Map<String, TensorInfo> tensors;
  private final Map<String, String> metadata;
  private final long dataStart;

  private SafetensorsReader(String file, Ranges ranges, Map<String, TensorInfo> tensors, Map<String, String> metadata, long dataStart) {
    this.file = file;
    this.ranges = ranges;
    this.tensors = tensors;
    this.metadata = metadata;
    this.dataStart = dataStart;
  }

  public static SafetensorsReader open(Path file) {
    long size;
    try {
      size = java.nio.file.Files.size(file);
    } catch (IOException e) {
      throw new SafetensorsException(file + ": cannot read: " + e.getMessage(), e);
    }
    return open(file.toString(), size, (pos, buf) -> {
      try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
        readFully(ch, buf, pos);
      }
    });
  }

  /**
   * Opens a safetensors file of {@code size} bytes read through {@code ranges} (a file on HDFS or
   * S3, say): only its header is read now, each tensor's bytes when asked for.
   */
  public static SafetensorsReader open(String file, long size, Ranges ranges) {
    try {
      if (size < 8) {
        throw new SafetensorsException(file + ": truncated file: " + size + " bytes, expected at least 8 for the header length");
      }
      ByteBuffer lenBuf = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
      ranges.read(0, lenBuf);
      long n = lenBuf.getLong(0);
      if (n <= 0 || n > MAX_HEADER_BYTES) {
        throw new SafetensorsException(file + ": header length " + n + " is invalid, expected 1.." + MAX_HEADER_BYTES);
      }
      if (8 + n > size) {
        throw new SafetensorsException(file + ": truncated file: header length " + n + " exceeds the file size " + size);
      }
      ByteBuffer hdr = ByteBuffer.allocate((int) n);
      ranges.read(8, hdr);
      String json;
      try {
        json = StandardCharsets.UTF_8.newDecoder().onMalformedInput(java.nio.charset.CodingErrorAction.REPORT)
            .onUnmappableCharacter(java.nio.charset.CodingErrorAction.REPORT).decode(hdr.flip()).toString();
      } catch (java.nio.charset.CharacterCodingException e) {
        throw new SafetensorsException(file + ": header is not valid UTF-8 (" + e + ")");
      }
      JsonNode root;
      try {
        root = JSON.readTree(json);
      } catch (JsonProcessingException e) {
        throw new SafetensorsException(file + ": header is not valid JSON (expected one object, then only spaces): " + e.getOriginalMessage());
      }
      if (root == null || !root.isObject()) {
        throw new SafetensorsException(file + ": header must be a JSON object");
      }
      long dataStart = 8 + n;
      long dataLen = size - dataStart;
      Map<String, TensorInfo> infos = new LinkedHashMap<>();
      Map<String, String> meta = new LinkedHashMap<>();
      for (Iterator<Map.Entry<String, JsonNode>> it = root.fields(); it.hasNext(); ) {
        Map.Entry<String, JsonNode> e = it.next();
        if (e.getKey().equals("__metadata__")) {
          if (!e.getValue().isObject()) {
            throw new SafetensorsException(file + ": __metadata__ must be an object of strings");
          }
          e.getValue().fields().forEachRemaining(m -> {
            if (!m.getValue().isTextual()) {
              throw new SafetensorsException(file + ": __metadata__ value for '" + m.getKey() + "' must be a string");
            }
            meta.put(m.getKey(), m.getValue().asText());
          });
          continue;
        }
        infos.put(e.getKey(), parseEntry(file, e.getKey(), e.getValue(), dataLen));
      }
      checkTiling(file, infos, dataLen);
      return new SafetensorsReader(file, ranges, Collections.unmodifiableMap(infos), Collections.unmodifiableMap(meta), dataStart);
    } catch (IOException e) {
      throw new SafetensorsException(file + ": cannot read: " + e.getMessage(), e);
    }
  }

  private static TensorInfo parseEntry(String file, String name, JsonNode v, long dataLen) {
    String where = file + ": tensor '" + name + "'";
    if (!v.isObject() || !v.path("dtype").isTextual() || !v.path("shape").isArray() || !v.path("data_offsets").isArray()) {
      throw new SafetensorsException(where + ": entry must have dtype (string), shape (array) and data_offsets (array)");
    }
    DType dtype = DType.parse(v.get("dtype").asText(), where);
    JsonNode s = v.get("shape");
    long[] shape = new long[s.size()];
    long numel = 1;
    for (int i = 0; i < shape.length; i++) {
      if (!s.get(i).isIntegralNumber() || !s.get(i).canConvertToLong() || s.get(i).asLong() < 0) {
        throw new SafetensorsException(where + ": shape " + s + " must hold non-negative integers");
      }
      shape[i] = s.get(i).asLong();
      try {
        numel = Math.multiplyExact(numel, shape[i]);
      } catch (ArithmeticException overflow) {
        throw new SafetensorsException(where + ": shape " + s + " has more elements than 2^63");
      }
    }
    JsonNode o = v.get("data_offsets");
    if (o.size() != 2 || !o.get(0).isIntegralNumber() || !o.get(1).isIntegralNumber() || !o.get(0).canConvertToLong()
        || !o.get(1).canConvertToLong()) {
      throw new SafetensorsException(where + ": data_offsets " + o + " must be [begin, end], two integers");
    }
    long begin = o.get(0).asLong();
    long end = o.get(1).asLong();
    if (begin < 0 || end < begin || end > dataLen) {
      throw new SafetensorsException(where + ": data_offsets [" + begin + ", " + end + "] out of range, the data section has " + dataLen + " bytes");
    }
    long expected;
    try {
      expected = Math.multiplyExact(numel, (long) dtype.bytes());
    } catch (ArithmeticException overflow) {
      throw new SafetensorsException(where + ": " + dtype + " shape " + s + " needs more than 2^63 bytes");
    }
    if (end - begin != expected) {
      throw new SafetensorsException(where + ": " + dtype + " shape " + s + " needs " + expected + " bytes but data_offsets span " + (end - begin));
    }
    return new TensorInfo(name, dtype, shape, begin, end);
  }

  private static void checkTiling(String file, Map<String, TensorInfo> infos, long dataLen) {
    List<TensorInfo> sorted = new ArrayList<>(infos.values());
    sorted.sort(Comparator.comparingLong(TensorInfo::begin).thenComparingLong(TensorInfo::end));
    long pos = 0;
    String prev = null;
    for (TensorInfo t : sorted) {
      if (t.begin() < pos) {
        throw new SafetensorsException(file + ": tensor '" + t.name() + "' at [" + t.begin() + ", " + t.end() + ") overlaps tensor '" + prev + "' which ends at " + pos);
      }
      if (t.begin() > pos) {
        throw new SafetensorsException(file + ": hole in the data section before tensor '" + t.name() + "': bytes [" + pos + ", " + t.begin() + ") belong to no tensor");
      }
      pos = t.end();
      prev = t.name();
    }
    if (pos != dataLen) {
      throw new SafetensorsException(file + ": the data section has " + dataLen + " bytes but tensors cover only " + pos + (dataLen < pos ? " (truncated file)" : " (trailing bytes)"));
    }
  }

  private static void readFully(FileChannel ch, ByteBuffer buf, long pos) throws IOException {
    while (buf.hasRemaining()) {
      int r = ch.read(buf, pos + buf.position());
      if (r < 0) {
        throw new IOException("unexpected end of file");
      }
    }
  }

  /** The file, as named when opened (a path or a URI). */
  public String file() {
    return file;
  }

  /** Tensor entries in header order. */
  public Map<String, TensorInfo> tensors() {
    return tensors;
  }

  public Map<String, String> metadata() {
    return metadata;
  }

  public Optional<TensorInfo> info(String name) {
    return Optional.ofNullable(tensors.get(name));
  }

  public Tensor read(String name) {
    TensorInfo t = tensors.get(name);
    if (t == null) {
      throw new SafetensorsException(file + ": no tensor named '" + name + "'");
    }
    if (t.byteSize() > Integer.MAX_VALUE - 8) {
      throw new SafetensorsException(file + ": tensor '" + name + "' has " + t.byteSize() + " bytes, more than one Java array holds");
    }
    ByteBuffer buf = ByteBuffer.allocate((int) t.byteSize());
    try {
      ranges.read(dataStart + t.begin(), buf);
    } catch (IOException e) {
      throw new SafetensorsException(file + ": cannot read tensor '" + name + "': " + e.getMessage(), e);
    }
    return new Tensor(t.dtype(), t.shape(), buf.array());
  }
}
