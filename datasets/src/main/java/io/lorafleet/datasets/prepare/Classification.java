package io.lorafleet.datasets.prepare;

import io.lorafleet.datasets.arrow.Example;
import io.lorafleet.worker.model.ModelConfig;
import io.lorafleet.worker.tokenizer.Tokenizer;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * --format classification: (text, optional text_pair, label) → the ids and token type ids
 * transformers' tokenizer(text, text_pair) gives (the post-processor's separators included) and one label: a
 * class id, given as a number or as a name from the model's id2label, or, when the model regresses
 * (num_labels 1), a number. CSV gives every field as a string; numbers in strings are read as numbers.
 */
final class Classification {
  private Classification() {}

  static Tokenize.Result example(Tokenizer tok, Map<String, Object> rec, PrepareOptions o, ModelConfig model) {
    String text = RecordFormat.string(rec, "text", o, false);
    Object p = rec.get(o.records().column("text_pair"));
    Optional<String> pair = p == null ? Optional.empty() : Optional.of(RecordFormat.string(rec, "text_pair", o, true));
    float label = label(rec.get(o.records().column("label")), o.records().column("label"), model);
    Tokenizer.Classified enc = tok.encodeForClassification(text, pair);
    boolean truncated = false;
    if (enc.ids().length > o.tokens().maxSeqLen()) {
      if (o.tokens().truncation().equals("drop")) {
        throw new RecordFormat.BadRecord("too long: " + enc.ids().length + " tokens, --max-seq-len is " + o.tokens().maxSeqLen() + " (--truncation drop)");
      }
      enc = tok.encodeForClassification(text, pair, o.tokens().maxSeqLen()); // longest_first, as transformers truncates pairs
      if (enc.ids().length > o.tokens().maxSeqLen()) {
        throw new RecordFormat.BadRecord("too long: the special tokens alone take more than --max-seq-len " + o.tokens().maxSeqLen());
      }
      truncated = true;
    }
    return new Tokenize.Result(Example.classified(enc.ids(), enc.types(), label), truncated);
  }

  static float label(Object v, String column, ModelConfig model) {
    if (v == null) {
      throw new RecordFormat.BadRecord("missing field '" + column + "'");
    }
    List<String> names = model.labelNames();
    double y;
    if (v instanceof Number n) {
      y = n.doubleValue();
    } else if (v instanceof com.fasterxml.jackson.databind.JsonNode j && j.isNumber()) {
      y = j.asDouble();
    } else if (v instanceof String s && !model.regression() && names.contains(s)) {
      return names.indexOf(s);
    } else if (v instanceof String s) {
      try {
        y = Double.parseDouble(s.trim());
      } catch (NumberFormatException e) {
        throw new RecordFormat.BadRecord("label '" + s + "' in field '" + column + "' is not " + (model.regression() ? "a number (the model regresses, num_labels 1)"
            : "a class of the model: expected an id in 0.." + (names.size() - 1) + " or one of " + names + " (config.json id2label)"));
      }
    } else {
      throw new RecordFormat.BadRecord("field '" + column + "' must be a number or a string but found " + v);
    }
    if (model.regression()) {
      if (!Double.isFinite(y)) {
        throw new RecordFormat.BadRecord("label " + y + " in field '" + column + "' is not finite");
      }
      return (float) y;
    }
    if (y != Math.rint(y) || y < 0 || y >= names.size()) {
      throw new RecordFormat.BadRecord("label " + v + " in field '" + column + "' is not a class id: expected an integer in 0.." + (names.size() - 1)
          + " or one of " + names);
    }
    return (float) y;
  }
}
