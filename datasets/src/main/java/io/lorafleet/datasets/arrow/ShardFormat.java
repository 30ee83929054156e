package io.lorafleet.datasets.arrow;

import java.util.List;
import java.util.Map;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.FieldType;
import org.apache.arrow.vector.types.pojo.Schema;

/**
 * The shard schema: list&lt;int32&gt; columns input_ids, labels and (packed) position_ids, written as
 * Arrow IPC streams, which is what Hugging Face datasets' save_to_disk writes and Dataset.from_file
 * reads. The "huggingface" schema metadata carries the features, as datasets stores them.
 */
public final class ShardFormat {
  public static final String INPUT_IDS = "input_ids";
  public static final String LABELS = "labels";
  public static final String POSITION_IDS = "position_ids";

  private ShardFormat() {}

  public static String shardName(int i, int n) {
    return String.format("data-%05d-of-%05d.arrow", i, n);
  }

  public static Schema schema(boolean packed) {
    List<String> cols = packed ? List.of(INPUT_IDS, LABELS, POSITION_IDS) : List.of(INPUT_IDS, LABELS);
    StringBuilder features = new StringBuilder("{\"info\":{\"features\":{");
    List<Field> fields = new java.util.ArrayList<>();
    for (int i = 0; i < cols.size(); i++) {
      Field item = new Field("item", FieldType.nullable(new ArrowType.Int(32, true)), null);
      fields.add(new Field(cols.get(i), FieldType.nullable(new ArrowType.List()), List.of(item)));
      features.append(i == 0 ? "" : ",").append('"').append(cols.get(i))
          .append("\":{\"feature\":{\"dtype\":\"int32\",\"_type\":\"Value\"},\"_type\":\"Sequence\"}");
    }
    features.append("}}}");
    return new Schema(fields, Map.of("huggingface", features.toString()));
  }
}
