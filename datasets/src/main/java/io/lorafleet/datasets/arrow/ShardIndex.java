package io.lorafleet.datasets.arrow;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import org.apache.arrow.flatbuf.Message;
import org.apache.arrow.flatbuf.MessageHeader;
import org.apache.arrow.flatbuf.RecordBatch;

/**
 * Where a shard's record batches lie. An IPC stream file has no footer, so without this a reader
 * that wants one batch would scan the whole shard. {@code prepare} writes it beside each shard as
 * {@code <shard>.index.json}; for a shard without one (written by HF datasets, say) {@link #scan}
 * builds it by reading message headers only, skipping the bodies.
 *
 * @param schemaBytes the stream's schema message: bytes [0, schemaBytes)
 * @param blocks the record batches in order: each message's [offset, offset + length) and row count
 */
public record ShardIndex(long schemaBytes, List<Block> blocks) {
  private static final ObjectMapper JSON = new ObjectMapper();
  public static final String SUFFIX = ".index.json";

  /** One record batch message. */
  public record Block(long offset, long length, int rows) {}

  public ShardIndex {
    blocks = List.copyOf(blocks);
  }

  /** The stream's length: after the last batch comes the 8-byte end-of-stream marker. */
  public long streamBytes() {
    return (blocks.isEmpty() ? schemaBytes : blocks.get(blocks.size() - 1).offset() + blocks.get(blocks.size() - 1).length()) + 8;
  }

  public long rows() {
    return blocks.stream().mapToLong(Block::rows).sum();
  }

  public JsonNode toJson() {
    ObjectNode n = JSON.createObjectNode();
    n.put("format", "lorafleet-shard-index-1");
    n.put("schema_bytes", schemaBytes);
    ArrayNode b = n.putArray("batches");
    for (Block x : blocks) {
      b.addArray().add(x.offset()).add(x.length()).add(x.rows());
    }
    return n;
  }

  public static ShardIndex fromJson(JsonNode n, String where) {
    if (!n.path("format").asText().equals("lorafleet-shard-index-1") || !n.path("batches").isArray()) {
      throw new IllegalArgumentException(where + ": not a lorafleet shard index (expected format lorafleet-shard-index-1)");
    }
    List<Block> blocks = new ArrayList<>();
    for (JsonNode b : n.get("batches")) {
      blocks.add(new Block(b.get(0).asLong(), b.get(1).asLong(), b.get(2).asInt()));
    }
    return new ShardIndex(n.path("schema_bytes").asLong(), blocks);
  }

  /**
   * Builds the index of an IPC stream by reading each message's metadata and skipping its body.
   * Messages are framed as (0xFFFFFFFF, int32 metadata length, flatbuffer Message, body).
   */
  public static ShardIndex scan(InputStream raw, String where) throws IOException {
    DataInputStream in = new DataInputStream(raw);
    long pos = 0;
    long schemaBytes = -1;
    List<Block> blocks = new ArrayList<>();
    while (true) {
      long start = pos;
      int len;
      try {
        len = Integer.reverseBytes(in.readInt());
      } catch (EOFException end) {
        break;
      }
      pos += 4;
      if (len == -1) { // continuation marker, then the length
        len = Integer.reverseBytes(in.readInt());
        pos += 4;
      }
      if (len == 0) { // end of stream
        break;
      }
      byte[] meta = new byte[len];
      try {
        in.readFully(meta);
      } catch (EOFException cut) {
        throw truncated(where, start, len + " bytes of message metadata");
      }
      pos += len;
      Message m = Message.getRootAsMessage(ByteBuffer.wrap(meta).order(ByteOrder.LITTLE_ENDIAN));
      long body = m.bodyLength();
      try {
        in.skipNBytes(body);
      } catch (EOFException cut) {
        throw truncated(where, start, "a body of " + body + " bytes");
      }
      pos += body;
      if (m.headerType() == MessageHeader.Schema) {
        schemaBytes = pos;
      } else if (m.headerType() == MessageHeader.RecordBatch) {
        RecordBatch rb = (RecordBatch) m.header(new RecordBatch());
        blocks.add(new Block(start, pos - start, (int) rb.length()));
      } else {
        throw new IllegalArgumentException(where + ": unexpected Arrow message type " + m.headerType() + " at byte " + start);
      }
    }
    if (schemaBytes < 0) {
      throw new IllegalArgumentException(where + ": no Arrow schema message; not an IPC stream");
    }
    return new ShardIndex(schemaBytes, blocks);
  }

  private static IllegalArgumentException truncated(String where, long start, String what) {
    return new IllegalArgumentException(where + ": the Arrow message at byte " + start + " declares " + what + " but the file ends first; "
        + "the shard is cut short or corrupt (prepare it again), expected a whole Arrow IPC stream");
  }
}
