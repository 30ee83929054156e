package io.lorafleet.datasets.arrow;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.apache.hadoop.conf.Configuration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SplitReaderTest {
  @TempDir Path tmp;

  static Example ex(int i) {
    int n = 2 + i % 5;
    int[] ids = new int[n];
    int[] labels = new int[n];
    for (int k = 0; k < n; k++) {
      ids[k] = (i * 7 + k) % 50;
      labels[k] = k == 0 ? -100 : ids[k];
    }
    return new Example(ids, labels);
  }

  /** Two shards of 600 and 300 rows (3 and 2 batches), with or without their index files. */
  Path split(boolean withIndex) throws Exception {
    Path dir = Files.createDirectories(tmp.resolve(withIndex ? "indexed" : "bare").resolve("train"));
    int[] sizes = {600, 300};
    int next = 0;
    for (int s = 0; s < sizes.length; s++) {
      List<Example> rows = new ArrayList<>();
      for (int i = 0; i < sizes[s]; i++) {
        rows.add(ex(next++));
      }
      Path f = dir.resolve(ShardFormat.shardName(s, sizes.length));
      ShardIndex idx;
      try (OutputStream out = Files.newOutputStream(f)) {
        idx = ShardWriter.write(out, rows.iterator(), false);
      }
      assertEquals(sizes[s], idx.rows());
      assertEquals(Files.size(f), idx.streamBytes(), "the index ends where the stream ends (readers trust it only then)");
      try (var in = Files.newInputStream(f)) {
        assertEquals(idx, ShardIndex.scan(in, f.toString()), "the written index equals a scan of the stream");
      }
      if (withIndex) {
        Files.writeString(dir.resolve(f.getFileName() + ShardIndex.SUFFIX), idx.toJson().toString());
      }
    }
    return dir;
  }

  @Test
  void rowsAreReadBatchByBatchFromAnyHadoopPathWithOrWithoutAnIndex() throws Exception {
    for (boolean indexed : new boolean[] {true, false}) {
      Path dir = split(indexed);
      SplitReader r = SplitReader.open(dir.toUri().toString(), new Configuration(), TokenLimits.NONE, 2);
      assertEquals(900, r.rows());
      assertArrayEquals(new int[] {256, 256, 88, 256, 44}, r.blockRows());
      for (int i : new int[] {0, 255, 256, 599, 600, 899, 3, 700}) {
        assertArrayEquals(ex(i).inputIds(), r.row(i).inputIds(), "row " + i);
        assertArrayEquals(ex(i).labels(), r.row(i).labels(), "row " + i);
      }
      assertEquals(5, r.rows(10, 15).size());
      assertThrows(IndexOutOfBoundsException.class, () -> r.row(900));
    }
  }

  @Test
  void rowsAreCheckedWithTheirShardAndRow() throws Exception {
    SplitReader r = SplitReader.open(split(true).toString(), new Configuration(), new TokenLimits(40, 64), 2);
    var e = assertThrows(IllegalArgumentException.class, () -> r.rows(0, 900));
    assertTrue(e.getMessage().startsWith("split train, shard ") && e.getMessage().contains("data-00000-of-00002.arrow, row 6: input_ids[0] is 42"),
        e.getMessage());
  }
}
