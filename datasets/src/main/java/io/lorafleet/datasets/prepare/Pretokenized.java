package io.lorafleet.datasets.prepare;

import com.fasterxml.jackson.databind.JsonNode;
import io.lorafleet.datasets.arrow.Example;
import io.lorafleet.worker.model.Batch;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The {@code pretokenized} format: {@code input_ids} and {@code labels} lists of the same length,
 * labels -100 where no loss falls (Hugging Face's convention). Checked, never altered: ids must lie
 * in the model's vocabulary, labels too (or be -100), at least one label must carry loss, and a
 * record longer than --max-seq-len is refused (there is no context to cut that keeps it whole).
 */
final class Pretokenized {
  private Pretokenized() {}

  static Tokenize.Result example(Map<String, Object> rec, PrepareOptions o, int vocab) {
    int[] ids = ints(rec, o.records().column("input_ids"));
    int[] labels = ints(rec, o.records().column("labels"));
    if (ids.length == 0) {
      throw new RecordFormat.BadRecord("field '" + o.records().column("input_ids") + "' is empty");
    }
    if (labels.length != ids.length) {
      throw new RecordFormat.BadRecord("labels has " + labels.length + " entries but input_ids has " + ids.length);
    }
    if (ids.length > o.tokens().maxSeqLen()) {
      throw new RecordFormat.BadRecord("too long: " + ids.length + " tokens, --max-seq-len is " + o.tokens().maxSeqLen());
    }
    boolean any = false;
    for (int i = 0; i < ids.length; i++) {
      if (ids[i] < 0 || ids[i] >= vocab) {
        throw new RecordFormat.BadRecord("input_ids[" + i + "] = " + ids[i] + " is outside the vocabulary [0, " + vocab + ")");
      }
      if (labels[i] != Batch.IGNORE && (labels[i] < 0 || labels[i] >= vocab)) {
        throw new RecordFormat.BadRecord("labels[" + i + "] = " + labels[i] + " must be " + Batch.IGNORE + " or in [0, " + vocab + ")");
      }
      any |= labels[i] != Batch.IGNORE && i > 0;
    }
    if (!any) {
      throw new RecordFormat.BadRecord("no label carries loss (all " + Batch.IGNORE + " after the first position)");
    }
    return new Tokenize.Result(new Example(ids, labels), false);
  }

  /** A list of integers from JSON (JsonNode), Parquet (scala.collection.Seq) or Java (List). */
  static int[] ints(Map<String, Object> rec, String col) {
    Object v = rec.get(col);
    if (v == null) {
      throw new RecordFormat.BadRecord("missing field '" + col + "'");
    }
    List<Object> items = new ArrayList<>();
    if (v instanceof JsonNode n && n.isArray()) {
      n.forEach(x -> items.add(x.isIntegralNumber() && x.canConvertToLong() ? (Object) x.asLong() : x.toString()));
    } else if (v instanceof scala.collection.Seq<?> seq) {
      seq.foreach(x -> items.add(x));
    } else if (v instanceof List<?> l) {
      items.addAll(l);
    } else {
      throw new RecordFormat.BadRecord("field '" + col + "' must be a list of integers but found " + v.getClass().getSimpleName().toLowerCase());
    }
    int[] out = new int[items.size()];
    for (int i = 0; i < out.length; i++) {
      Object x = items.get(i);
      if (!(x instanceof Integer || x instanceof Long || x instanceof Short)) {
        throw new RecordFormat.BadRecord("field '" + col + "'[" + i + "] must be an integer but found " + x);
      }
      long wide = ((Number) x).longValue();
      if (wide != (int) wide) {
        throw new RecordFormat.BadRecord("field '" + col + "'[" + i + "] is " + wide + ", which does not fit in 32 bits");
      }
      out[i] = (int) wide;
    }
    return out;
  }
}
