package io.lorafleet.datasets.arrow;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.IntVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.complex.ListVector;
import org.apache.arrow.vector.ipc.ArrowStreamReader;

/** Reads a shard written by {@link ShardWriter} (or by HF datasets with the same columns). */
public final class ShardReader {
  private ShardReader() {}

  public static List<Example> read(Path shard) {
    try (InputStream in = Files.newInputStream(shard)) {
      return read(in, shard.toString());
    } catch (IOException e) {
      throw new IllegalArgumentException(shard + ": cannot read Arrow shard: " + e.getMessage(), e);
    }
  }

  public static List<Example> read(InputStream in, String where) throws IOException {
    return read(in, where, TokenLimits.NONE, 0);
  }

  /** @param firstRow the shard-relative number of the stream's first row, for error messages */
  static List<Example> read(InputStream in, String where, TokenLimits limits, long firstRow) throws IOException {
    List<Example> out = new ArrayList<>();
    try (BufferAllocator alloc = new RootAllocator(); ArrowStreamReader r = new ArrowStreamReader(in, alloc)) {
      VectorSchemaRoot root = r.getVectorSchemaRoot();
      boolean classified = has(root, ShardFormat.LABEL) && !has(root, ShardFormat.LABELS);
      for (String col : classified ? List.of(ShardFormat.INPUT_IDS) : List.of(ShardFormat.INPUT_IDS, ShardFormat.LABELS)) {
        if (!has(root, col)) {
          throw new IllegalArgumentException(where + ": column '" + col + "' is missing, found " + root.getSchema().getFields());
        }
      }
      boolean packed = has(root, ShardFormat.POSITION_IDS);
      boolean typed = classified && has(root, ShardFormat.TOKEN_TYPE_IDS);
      while (r.loadNextBatch()) {
        ListVector ids = (ListVector) root.getVector(ShardFormat.INPUT_IDS);
        ListVector labels = classified ? null : (ListVector) root.getVector(ShardFormat.LABELS);
        ListVector pos = packed ? (ListVector) root.getVector(ShardFormat.POSITION_IDS) : null;
        ListVector types = typed ? (ListVector) root.getVector(ShardFormat.TOKEN_TYPE_IDS) : null;
        for (int i = 0; i < root.getRowCount(); i++) {
          String at = where + ", row " + (firstRow + out.size());
          int[] inputIds = row(ids, i);
          Example e = classified ? Example.classified(inputIds, typed ? typeIds(types, inputIds.length, i, at) : new int[0],
              label(root.getVector(ShardFormat.LABEL), i, at))
              : new Example(inputIds, row(labels, i), packed ? row(pos, i) : new int[0]);
          limits.check(e, at);
          out.add(e);
        }
      }
    }
    return out;
  }

  /** A row's token_type_ids, which must be as long as its input_ids. */
  private static int[] typeIds(ListVector types, int n, int i, String where) {
    int[] t = row(types, i);
    if (t.length != n) {
      throw new IllegalArgumentException(where + ": column 'token_type_ids' holds " + t.length + " values for " + n + " input_ids");
    }
    return t;
  }

  private static boolean has(VectorSchemaRoot root, String col) {
    return root.getSchema().getFields().stream().anyMatch(f -> f.getName().equals(col));
  }

  /** A scalar label: an integer class id (datasets' ClassLabel is int64) or a floating-point value. */
  private static float label(org.apache.arrow.vector.FieldVector v, int i, String where) {
    if (v.isNull(i)) {
      throw new IllegalArgumentException(where + ": column 'label' is null");
    }
    Object x = v.getObject(i);
    if (!(x instanceof Number n)) {
      throw new IllegalArgumentException(where + ": column 'label' holds " + x + " (" + v.getField().getType() + "), expected an integer class id or a number");
    }
    return n.floatValue();
  }

  private static int[] row(ListVector v, int i) {
    IntVector data = (IntVector) v.getDataVector();
    int start = v.getElementStartIndex(i);
    int end = v.getElementEndIndex(i);
    int[] out = new int[end - start];
    for (int k = start; k < end; k++) {
      out[k - start] = data.get(k);
    }
    return out;
  }
}
