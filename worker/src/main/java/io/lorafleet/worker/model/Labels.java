package io.lorafleet.worker.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;

/**
 * A sequence classifier's labels given apart from the base's config.json, as transformers'
 * {@code from_pretrained(num_labels=…, id2label=…)} takes them: class names by id, or one value for
 * regression. {@link #FROM_CONFIG} (no names) leaves config.json's own. Applied to a base, they set
 * id2label, label2id, num_labels and problem_type; a base whose checkpoint already holds a head
 * for other labels refuses them by name ({@link #check}).
 */
public record Labels(List<String> names, boolean regression) implements Serializable {
  /** config.json's labels, as they are. */
  public static final Labels FROM_CONFIG = new Labels(List.of(), false);

  public Labels {
    names = List.copyOf(names);
    if (regression && names.size() != 1) {
      throw new IllegalArgumentException("a regression head has one output, found labels " + names);
    }
    if (new HashSet<>(names).size() != names.size() || names.stream().anyMatch(String::isBlank)) {
      throw new IllegalArgumentException("--labels must be distinct, non-empty names but found " + names);
    }
  }

  /**
   * The labels a command line gives: {@code --labels a,b,c}, {@code --num-labels N} (LABEL_0 ..
   * LABEL_N-1, as transformers names them) or {@code --regression}, at most one of them; none of
   * them: {@link #FROM_CONFIG}.
   */
  public static Labels of(List<String> names, Integer numLabels, boolean regression) {
    int given = (names.isEmpty() ? 0 : 1) + (numLabels == null ? 0 : 1) + (regression ? 1 : 0);
    if (given > 1) {
      throw new IllegalArgumentException("give one of --labels, --num-labels and --regression, found " + given);
    }
    if (regression) {
      return new Labels(List.of("LABEL_0"), true);
    }
    if (numLabels != null) {
      if (numLabels < 2) {
        throw new IllegalArgumentException("--num-labels must be at least 2 (use --regression for one value) but found " + numLabels);
      }
      List<String> n = new ArrayList<>();
      for (int i = 0; i < numLabels; i++) {
        n.add("LABEL_" + i);
      }
      return new Labels(n, false);
    }
    if (names.size() == 1) {
      throw new IllegalArgumentException("--labels names one class (" + names.get(0) + "); a classifier needs two or more, or --regression");
    }
    return new Labels(names, false);
  }

  /** The labels of a config.json (id2label, or num_labels). */
  public static Labels of(ModelConfig c) {
    return new Labels(c.labelNames(), c.regression());
  }

  public boolean fromConfig() {
    return names.isEmpty();
  }

  /** A config.json with these labels: id2label, label2id, num_labels and problem_type set. */
  public ObjectNode applyTo(ObjectNode raw) {
    ObjectNode c = raw.deepCopy();
    if (fromConfig()) {
      return c;
    }
    ObjectNode id2label = c.putObject("id2label");
    ObjectNode label2id = c.putObject("label2id");
    for (int i = 0; i < names.size(); i++) {
      id2label.put(Integer.toString(i), names.get(i));
      label2id.put(names.get(i), i);
    }
    c.put("num_labels", names.size());
    c.put("problem_type", regression ? "regression" : "single_label_classification");
    return c;
  }

  /** Reads labels written by {@link #write} (an adapter's), or {@link #FROM_CONFIG} where there are none. */
  public static Labels read(JsonNode n) {
    JsonNode id2label = n.path("id2label");
    if (!id2label.isObject() || id2label.isEmpty()) {
      return FROM_CONFIG;
    }
    List<String> names = new ArrayList<>();
    for (int i = 0; i < id2label.size(); i++) {
      names.add(id2label.path(Integer.toString(i)).asText("LABEL_" + i));
    }
    return new Labels(names, n.path("problem_type").asText("").equals("regression") || names.size() == 1);
  }

  /** Writes id2label and problem_type into {@code n}, transformers' names for them. */
  public void write(ObjectNode n) {
    ObjectNode id2label = n.putObject("id2label");
    for (int i = 0; i < names.size(); i++) {
      id2label.put(Integer.toString(i), names.get(i));
    }
    n.put("problem_type", regression ? "regression" : "single_label_classification");
  }

  /**
   * {@code base} with these labels, refused where they contradict the head its checkpoint holds
   * ({@code hasHead}): another number of classes, or other names than config.json's (placeholder
   * LABEL_i names aside). A base without a head takes any labels.
   */
  public ModelConfig check(ModelConfig base, boolean hasHead, String where) {
    if (fromConfig()) {
      return base;
    }
    if (!base.arch().encoder()) {
      throw new IllegalArgumentException("--labels applies to the sequence classifiers (" + Architecture.encoderModelTypes() + "), not " + where
          + ", a " + base.modelType() + " causal LM");
    }
    Labels own = of(base);
    boolean placeholders = java.util.stream.IntStream.range(0, own.names.size()).allMatch(i -> own.names.get(i).equals("LABEL_" + i));
    if (hasHead && (own.names.size() != names.size() || own.regression != regression || (!placeholders && !own.names.equals(names)))) {
      throw new IllegalArgumentException(where + " holds a trained head for " + own.describe() + " (config.json id2label), which " + describe()
          + " contradict; leave the labels out, or start from a base without a head");
    }
    return ModelConfig.fromJson(applyTo(base.raw()), where + "/config.json with " + describe());
  }

  /** For messages: "labels [a, b]" or "regression". */
  public String describe() {
    return regression ? "regression (one value)" : "labels " + names;
  }
}
