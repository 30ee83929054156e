package io.lorafleet.datasets.arrow;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.arrow.vector.types.FloatingPointPrecision;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.FieldType;
import org.apache.arrow.vector.types.pojo.Schema;

/**
 * The shard schema: list&lt;int32&gt; columns input_ids, labels and (packed) position_ids, or, for
 * sequence classification, input_ids, token_type_ids (as BERT's tokenizer gives them; shards
 * written before it was added lack it and read as all 0) and a scalar label (int64 class ids, as datasets' ClassLabel
 * stores them, or float32 values for regression, which transformers' Trainer reads as such),
 * written as Arrow IPC streams, which is what Hugging Face datasets' save_to_disk writes and
 * Dataset.from_file reads. The "huggingface" schema metadata carries the features, as datasets
 * stores them.
 */
public final class ShardFormat {
  public static final String INPUT_IDS = "input_ids";
  public static final String LABELS = "labels";
  public static final String POSITION_IDS = "position_ids";
  public static final String LABEL = "label";
  public static final String TOKEN_TYPE_IDS = "token_type_ids";

  /** What a split's rows hold. */
  public enum Columns {
    /** input_ids and labels. */
    TOKENS,
    /** input_ids, labels and position_ids. */
    PACKED,
    /** input_ids, token_type_ids and an int64 class id. */
    CLASSES,
    /** input_ids, token_type_ids and a float32 regression target. */
    VALUES;

    public boolean classification() {
      return this == CLASSES || this == VALUES;
    }
  }

  private ShardFormat() {}

  public static String shardName(int i, int n) {
    return String.format("data-%05d-of-%05d.arrow", i, n);
  }

  public static Schema schema(boolean packed) {
    return schema(packed ? Columns.PACKED : Columns.TOKENS);
  }

  public static Schema schema(Columns columns) {
    List<String> cols = switch (columns) {
      case PACKED -> List.of(INPUT_IDS, LABELS, POSITION_IDS);
      case TOKENS -> List.of(INPUT_IDS, LABELS);
      case CLASSES, VALUES -> List.of(INPUT_IDS, TOKEN_TYPE_IDS);
    };
    StringBuilder features = new StringBuilder("{\"info\":{\"features\":{");
    List<Field> fields = new ArrayList<>();
    for (int i = 0; i < cols.size(); i++) {
      Field item = new Field("item", FieldType.nullable(new ArrowType.Int(32, true)), null);
      fields.add(new Field(cols.get(i), FieldType.nullable(new ArrowType.List()), List.of(item)));
      features.append(i == 0 ? "" : ",").append('"').append(cols.get(i))
          .append("\":{\"feature\":{\"dtype\":\"int32\",\"_type\":\"Value\"},\"_type\":\"Sequence\"}");
    }
    if (columns.classification()) {
      boolean classes = columns == Columns.CLASSES;
      fields.add(new Field(LABEL, FieldType.nullable(classes ? new ArrowType.Int(64, true) : new ArrowType.FloatingPoint(FloatingPointPrecision.SINGLE)), null));
      features.append(",\"").append(LABEL).append("\":{\"dtype\":\"").append(classes ? "int64" : "float32").append("\",\"_type\":\"Value\"}");
    }
    features.append("}}}");
    return new Schema(fields, Map.of("huggingface", features.toString()));
  }
}
