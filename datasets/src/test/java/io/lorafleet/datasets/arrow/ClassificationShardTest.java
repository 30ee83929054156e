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
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.ipc.ArrowStreamReader;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Shards of a sequence classifier: input_ids and a scalar label, written, read back and checked against the model's head. */
class ClassificationShardTest {
  @TempDir Path tmp;

  private Path write(ShardFormat.Columns columns, List<Example> rows) throws Exception {
    Path f = tmp.resolve(columns + ".arrow");
    try (OutputStream out = Files.newOutputStream(f)) {
      ShardWriter.write(out, rows.iterator(), columns);
    }
    return f;
  }

  @Test
  void classIdsAndValuesRoundTripInTheirDatasetsTypes() throws Exception {
    List<Example> rows = new ArrayList<>();
    for (int i = 0; i < 300; i++) { // more than one record batch
      rows.add(Example.classified(new int[] {1, 4 + i % 7, 2}, i % 3));
    }
    Path f = write(ShardFormat.Columns.CLASSES, rows);
    List<Example> back = ShardReader.read(f);
    assertEquals(rows.size(), back.size());
    for (int i = 0; i < rows.size(); i++) {
      assertArrayEquals(rows.get(i).inputIds(), back.get(i).inputIds());
      assertEquals(rows.get(i).label(), back.get(i).label());
      assertTrue(java.util.Arrays.stream(back.get(i).labels()).allMatch(x -> x == -100), "no token labels");
    }
    try (var alloc = new RootAllocator(); var r = new ArrowStreamReader(Files.newInputStream(f), alloc)) {
      var schema = r.getVectorSchemaRoot().getSchema();
      assertEquals(new ArrowType.Int(64, true), schema.findField("label").getType(), "datasets' ClassLabel is int64");
      assertTrue(schema.getCustomMetadata().get("huggingface").contains("\"label\":{\"dtype\":\"int64\""));
      assertTrue(schema.getFields().stream().noneMatch(x -> x.getName().equals("labels")), "transformers' collator renames label to labels");
    }
    Path v = write(ShardFormat.Columns.VALUES, List.of(Example.classified(new int[] {1, 2}, -0.25f), Example.classified(new int[] {1, 5, 2}, 3.5f)));
    assertEquals(List.of(-0.25f, 3.5f), ShardReader.read(v).stream().map(e -> e.label().orElseThrow()).toList());
  }

  @Test
  void labelsAreCheckedAgainstTheHeadNamingTheRow() throws Exception {
    Path f = write(ShardFormat.Columns.CLASSES, List.of(Example.classified(new int[] {1, 2}, 1), Example.classified(new int[] {1, 3}, 4)));
    var two = new TokenLimits(10, 16, 2);
    var e = assertThrows(IllegalArgumentException.class, () -> ShardReader.read(Files.newInputStream(f), "shard", two, 0));
    assertTrue(e.getMessage().contains("row 1") && e.getMessage().contains("label is 4.0") && e.getMessage().contains("num_labels 2"), e.getMessage());
    assertEquals(2, ShardReader.read(Files.newInputStream(f), "shard", new TokenLimits(10, 16, 5), 0).size());
    var lm = assertThrows(IllegalArgumentException.class, () -> ShardReader.read(Files.newInputStream(f), "shard", new TokenLimits(10, 16), 0));
    assertTrue(lm.getMessage().contains("causal LM"), lm.getMessage());
    Path tokens = write(ShardFormat.Columns.TOKENS, List.of(new Example(new int[] {1, 2}, new int[] {-100, 2})));
    var cls = assertThrows(IllegalArgumentException.class, () -> ShardReader.read(Files.newInputStream(tokens), "shard", two, 0));
    assertTrue(cls.getMessage().contains("--format classification"), cls.getMessage());
    Path values = write(ShardFormat.Columns.VALUES, List.of(Example.classified(new int[] {1, 2}, Float.NaN)));
    var nan = assertThrows(IllegalArgumentException.class, () -> ShardReader.read(Files.newInputStream(values), "shard", new TokenLimits(10, 16, 1), 0));
    assertTrue(nan.getMessage().contains("finite"), nan.getMessage());
  }
}
