package io.lorafleet.datasets.arrow;

import java.io.IOException;
import java.io.OutputStream;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.IntVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.complex.ListVector;
import org.apache.arrow.vector.ipc.ArrowStreamWriter;

/**
 * Writes examples as one Arrow IPC stream in record batches of {@link #BATCH_ROWS} rows, and says
 * where each batch lies ({@link ShardIndex}), so that readers can fetch one batch of a shard. A
 * batch is the unit a worker reads and caches: small enough that a window of them stays small.
 */
public final class ShardWriter {
  static final int BATCH_ROWS = 256;

  private ShardWriter() {}

  /** Streams examples out batch by batch: only {@link #BATCH_ROWS} rows are held at a time. Returns where the batches lie. */
  public static ShardIndex write(OutputStream target, Iterator<Example> examples, boolean packed) throws IOException {
    return write(target, examples, packed ? ShardFormat.Columns.PACKED : ShardFormat.Columns.TOKENS);
  }

  /** As {@link #write(OutputStream, Iterator, boolean)}, with the given columns. */
  public static ShardIndex write(OutputStream target, Iterator<Example> examples, ShardFormat.Columns columns) throws IOException {
    Counting out = new Counting(target);
    List<ShardIndex.Block> blocks = new ArrayList<>();
    long schemaBytes;
    try (BufferAllocator alloc = new RootAllocator(); VectorSchemaRoot root = VectorSchemaRoot.create(ShardFormat.schema(columns), alloc);
        ArrowStreamWriter w = new ArrowStreamWriter(root, null, out)) {
      w.start();
      schemaBytes = out.count;
      boolean first = true;
      while (first || examples.hasNext()) {
        List<Example> chunk = new ArrayList<>(BATCH_ROWS);
        while (chunk.size() < BATCH_ROWS && examples.hasNext()) {
          chunk.add(examples.next());
        }
        first = false;
        root.allocateNew();
        fill((ListVector) root.getVector(ShardFormat.INPUT_IDS), chunk, 0);
        if (columns.classification()) {
          fill((ListVector) root.getVector(ShardFormat.TOKEN_TYPE_IDS), chunk, 3);
          fillLabel(root, chunk, columns);
        } else {
          fill((ListVector) root.getVector(ShardFormat.LABELS), chunk, 1);
        }
        if (columns == ShardFormat.Columns.PACKED) {
          fill((ListVector) root.getVector(ShardFormat.POSITION_IDS), chunk, 2);
        }
        root.setRowCount(chunk.size());
        long at = out.count;
        w.writeBatch(); // an empty shard still holds one empty batch, as datasets writes it
        blocks.add(new ShardIndex.Block(at, out.count - at, chunk.size()));
      }
      w.end();
    }
    return new ShardIndex(schemaBytes, blocks);
  }

  /** Counts the bytes written through it: the writer's position in the stream. */
  private static final class Counting extends java.io.FilterOutputStream {
    long count;

    Counting(OutputStream out) {
      super(out);
    }

    @Override
    public void write(int b) throws IOException {
      out.write(b);
      count++;
    }

    @Override
    public void write(byte[] b, int off, int len) throws IOException {
      out.write(b, off, len);
      count += len;
    }
  }

  private static void fillLabel(VectorSchemaRoot root, List<Example> rows, ShardFormat.Columns columns) {
    for (int r = 0; r < rows.size(); r++) {
      float y = rows.get(r).label().orElseThrow(() -> new IllegalArgumentException("a classification shard needs a label on every row"));
      if (columns == ShardFormat.Columns.CLASSES) {
        ((org.apache.arrow.vector.BigIntVector) root.getVector(ShardFormat.LABEL)).setSafe(r, (long) y);
      } else {
        ((org.apache.arrow.vector.Float4Vector) root.getVector(ShardFormat.LABEL)).setSafe(r, y);
      }
    }
    root.getVector(ShardFormat.LABEL).setValueCount(rows.size());
  }

  private static void fill(ListVector v, List<Example> rows, int column) {
    IntVector data = (IntVector) v.addOrGetVector(org.apache.arrow.vector.types.pojo.FieldType.nullable(new org.apache.arrow.vector.types.pojo.ArrowType.Int(32, true))).getVector();
    int total = 0;
    for (Example e : rows) {
      total += e.inputIds().length;
    }
    v.allocateNew();
    data.allocateNew(total);
    int pos = 0;
    for (int r = 0; r < rows.size(); r++) {
      Example e = rows.get(r);
      int[] vals = switch (column) {
        case 0 -> e.inputIds();
        case 1 -> e.labels();
        case 2 -> e.positionIds().orElseThrow();
        default -> e.tokenTypes().length == 0 ? new int[e.inputIds().length] : e.tokenTypes();
      };
      v.startNewValue(r);
      for (int x : vals) {
        data.setSafe(pos++, x);
      }
      v.endValue(r, vals.length);
    }
    data.setValueCount(pos);
    v.setValueCount(rows.size());
  }
}
