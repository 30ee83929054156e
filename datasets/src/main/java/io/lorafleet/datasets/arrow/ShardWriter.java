package io.lorafleet.datasets.arrow;

import java.io.IOException;
import java.io.OutputStream;
import java.util.List;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.IntVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.complex.ListVector;
import org.apache.arrow.vector.ipc.ArrowStreamWriter;

/** Writes examples as one Arrow IPC stream in record batches of {@link #BATCH_ROWS} rows. */
public final class ShardWriter {
  static final int BATCH_ROWS = 1024;

  private ShardWriter() {}

  public static void write(OutputStream out, List<Example> examples, boolean packed) throws IOException {
    try (BufferAllocator alloc = new RootAllocator(); VectorSchemaRoot root = VectorSchemaRoot.create(ShardFormat.schema(packed), alloc);
        ArrowStreamWriter w = new ArrowStreamWriter(root, null, out)) {
      w.start();
      for (int from = 0; from < examples.size() || from == 0; from += BATCH_ROWS) {
        List<Example> chunk = examples.subList(from, Math.min(examples.size(), from + BATCH_ROWS));
        root.allocateNew();
        fill((ListVector) root.getVector(ShardFormat.INPUT_IDS), chunk, 0);
        fill((ListVector) root.getVector(ShardFormat.LABELS), chunk, 1);
        if (packed) {
          fill((ListVector) root.getVector(ShardFormat.POSITION_IDS), chunk, 2);
        }
        root.setRowCount(chunk.size());
        w.writeBatch();
        if (examples.isEmpty()) {
          break;
        }
      }
      w.end();
    }
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
      int[] vals = column == 0 ? e.inputIds() : column == 1 ? e.labels() : e.positionIds().orElseThrow();
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
