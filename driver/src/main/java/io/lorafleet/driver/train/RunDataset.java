package io.lorafleet.driver.train;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.lorafleet.worker.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;

/**
 * A run's prepared dataset as the driver sees it: its manifest, never its rows, and the checks of
 * the run against it (the tokenizer, a classifier's labels, a validation split for --eval-every,
 * --epochs resolved into steps), made before any Spark work.
 */
final class RunDataset {
  private static final ObjectMapper JSON = new ObjectMapper();

  private RunDataset() {}

  /** A prepared dataset's manifest.json, read through Hadoop's FileSystem API (--data may be any URI), and its fingerprint. */
  record Manifest(com.fasterxml.jackson.databind.JsonNode json, String fingerprint) {
    static Manifest read(TrainConfig cfg, org.apache.hadoop.conf.Configuration conf) throws IOException {
      org.apache.hadoop.fs.Path p = new org.apache.hadoop.fs.Path(cfg.io().data(), "manifest.json");
      org.apache.hadoop.fs.FileSystem fs = p.getFileSystem(conf);
      if (!fs.isFile(p)) {
        throw new IllegalArgumentException("--data " + cfg.io().data() + ": manifest.json is missing; run lorafleet prepare first");
      }
      byte[] bytes;
      try (var in = fs.open(p)) {
        bytes = in.readAllBytes();
      }
      return new Manifest(JSON.readTree(bytes), RunIdentity.fingerprint(bytes));
    }

    long rows(String split) {
      return json.at("/splits/" + split + "/rows").asLong(json.at("/splits/" + split + "/records").asLong(0));
    }
  }

  /**
   * Checks the dataset against the job: prepared with this model's tokenizer and, for a classifier,
   * for its labels; a validation split for --eval-every; resolves --epochs into steps. The driver
   * reads the manifest only, never the rows.
   */
  static TrainConfig check(TrainConfig cfg, Manifest m, Path tokenizerDir, io.lorafleet.worker.model.ModelConfig model) throws IOException {
    com.fasterxml.jackson.databind.JsonNode labels = m.json().path("labels");
    if (labels.isObject() && model.arch().encoder()) { // manifests written before labels were recorded: the rows are checked as they are read
      List<String> prepared = new java.util.ArrayList<>();
      labels.path("names").forEach(x -> prepared.add(x.asText()));
      if (labels.path("regression").asBoolean() != model.regression() || !prepared.equals(model.labelNames())) {
        throw new IllegalArgumentException("--data " + cfg.io().data() + " was prepared for " + (labels.path("regression").asBoolean() ? "regression"
            : "labels " + prepared) + " but --model " + cfg.io().model() + " has " + (model.regression() ? "a regression head" : "labels "
            + model.labelNames()) + " (config.json id2label, or --labels); prepare the data again with these labels");
      }
    }
    String fp = m.json().path("tokenizer_fingerprint").asText();
    try (Tokenizer tok = Tokenizer.load(tokenizerDir)) {
      if (!fp.equals(tok.fingerprint())) {
        throw new IllegalArgumentException("--data " + cfg.io().data() + " was tokenized with tokenizer " + fp + " but --model " + cfg.io().model()
            + " has tokenizer " + tok.fingerprint() + "; prepare the data again with this model");
      }
    }
    String metric = cfg.eval().best().metric();
    boolean classifierMetric = TrainConfig.Selection.CLASSIFIER_METRICS.contains(metric);
    if (model.arch().encoder() ? metric.equals("exact_match") : classifierMetric) {
      throw new IllegalArgumentException("--metric-for-best-model " + metric + " is not a metric of " + model.modelType() + ": a "
          + (model.arch().encoder() ? "sequence classifier has loss, perplexity, accuracy, f1, matthews and pearson"
          : "causal LM has loss, perplexity and exact_match"));
    }
    if (cfg.eval().every() > 0 && m.rows("validation") == 0) {
      throw new IllegalArgumentException("--eval-every " + cfg.eval().every() + " needs validation examples but " + cfg.io().data() + "/validation"
          + " holds none; prepare with --val-fraction, or set --eval-every 0");
    }
    if (cfg.batching().epochs() == 0) {
      return cfg;
    }
    long rows = m.rows("train");
    if (rows == 0) {
      throw new IllegalArgumentException("--data " + cfg.io().data() + ": the training split holds no rows");
    }
    long steps = (cfg.batching().epochs() * rows + cfg.batching().globalBatch() - 1) / cfg.batching().globalBatch();
    if (steps > Integer.MAX_VALUE) {
      throw new IllegalArgumentException("--epochs " + cfg.batching().epochs() + " over " + rows + " rows is " + steps + " steps, more than " + Integer.MAX_VALUE);
    }
    return cfg.toBuilder().steps((int) steps).epochs(0).build();
  }

}
