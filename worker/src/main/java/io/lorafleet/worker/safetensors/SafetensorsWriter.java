package io.lorafleet.worker.safetensors;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Map;
import java.util.TreeMap;

/**
 * Writes safetensors files atomically (temp file in the same directory, then rename). Tensors are
 * laid out in sorted name order, as the reference writer does, and the JSON header is padded with
 * spaces to a multiple of 8 bytes, so equal inputs give byte-identical files.
 */
public final class SafetensorsWriter {
  private static final ObjectMapper JSON = new ObjectMapper();

  private SafetensorsWriter() {}

  public static void write(Path file, Map<String, Tensor> tensors, Map<String, String> metadata) throws IOException {
    TreeMap<String, Tensor> sorted = new TreeMap<>(tensors);
    ObjectNode header = JSON.createObjectNode();
    if (!metadata.isEmpty()) {
      ObjectNode m = header.putObject("__metadata__");
      new TreeMap<>(metadata).forEach(m::put);
    }
    long offset = 0;
    for (Map.Entry<String, Tensor> e : sorted.entrySet()) {
      Tensor t = e.getValue();
      ObjectNode n = header.putObject(e.getKey());
      n.put("dtype", t.dtype().name());
      ArrayNode s = n.putArray("shape");
      for (long d : t.shape()) {
        s.add(d);
      }
      ArrayNode o = n.putArray("data_offsets");
      o.add(offset);
      offset += t.data().length;
      o.add(offset);
    }
    byte[] json = JSON.writeValueAsString(header).getBytes(StandardCharsets.UTF_8);
    int padded = (json.length + 7) / 8 * 8;
    byte[] hdr = new byte[padded];
    System.arraycopy(json, 0, hdr, 0, json.length);
    for (int i = json.length; i < padded; i++) {
      hdr[i] = ' ';
    }
    Path dir = file.toAbsolutePath().getParent();
    Files.createDirectories(dir);
    Path tmp = Files.createTempFile(dir, "." + file.getFileName() + ".", ".tmp");
    try {
      try (OutputStream out = Files.newOutputStream(tmp)) {
        out.write(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(padded).array());
        out.write(hdr);
        for (Tensor t : sorted.values()) {
          out.write(t.data());
        }
      }
      Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    } finally {
      Files.deleteIfExists(tmp);
    }
  }
}
