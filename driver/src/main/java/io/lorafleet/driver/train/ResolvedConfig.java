package io.lorafleet.driver.train;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import com.fasterxml.jackson.databind.JsonNode;
import io.lorafleet.worker.quant.Quantization;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;
import java.util.TreeMap;
import java.util.regex.Pattern;
import org.apache.spark.SparkConf;
import scala.Tuple2;

/**
 * train_config.yaml: everything a run was given, defaults included, written into the run directory
 * and every checkpoint, so that a run can be told apart and repeated. Spark confs whose key or value
 * matches spark.redaction.regex (Spark's own default when unset: secrets, passwords, tokens, access
 * keys) are written redacted, as Spark's UI shows them.
 */
public final class ResolvedConfig {
  static final String FILE = "train_config.yaml";
  /** Spark's default spark.redaction.regex. */
  static final String SPARK_DEFAULT_REDACTION = "(?i)secret|password|token|access[.]?key";
  static final String REDACTED = "*********(redacted)";
  private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory()).enable(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS);

  private ResolvedConfig() {}

  static String yaml(TrainConfig cfg, SparkConf conf) {
    Pattern secret = Pattern.compile(conf.get("spark.redaction.regex", SPARK_DEFAULT_REDACTION));
    TreeMap<String, String> spark = new TreeMap<>();
    for (Tuple2<String, String> kv : conf.getAll()) {
      boolean hide = secret.matcher(kv._1()).find() || secret.matcher(kv._2()).find();
      spark.put(kv._1(), hide ? REDACTED : kv._2());
    }
    ObjectNode root = YAML.createObjectNode();
    root.set("train", YAML.valueToTree(cfg));
    root.set("spark", YAML.valueToTree(spark));
    try {
      return "# the resolved configuration of this run (lorafleet train): every value, defaults included\n" + YAML.writeValueAsString(root);
    } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
      throw new UncheckedIOException(e);
    }
  }

  /**
   * The quantization the run in {@code runDir} trained over, as its train_config.yaml records it
   * (train.compute.quantize, or train.quantize in runs written before the settings were grouped);
   * empty when the run has no such file.
   */
  public static Optional<Quantization> quantization(String run, org.apache.hadoop.conf.Configuration conf) throws IOException {
    Optional<JsonNode> read = train(run, conf);
    if (read.isEmpty()) {
      return Optional.empty();
    }
    JsonNode train = read.get();
    JsonNode q = train.path("compute").path("quantize");
    if (q.isMissingNode()) {
      q = train.path("quantize");
    }
    return q.isObject() ? Optional.of(Quantization.of(q.path("method").asText("none"), q.path("doubleQuant").asBoolean(true))) : Optional.empty();
  }

  /** The "train" section of the train_config.yaml in {@code run} (a local path or Hadoop URI); empty when the run has none. */
  public static Optional<JsonNode> train(String run, org.apache.hadoop.conf.Configuration conf) throws IOException {
    org.apache.hadoop.fs.Path file = new org.apache.hadoop.fs.Path(io.lorafleet.datasets.fs.HadoopConf.remote(run) ? run
        : Path.of(run).toAbsolutePath().toUri().toString(), FILE);
    org.apache.hadoop.fs.FileSystem fs = file.getFileSystem(conf);
    if (!fs.isFile(file)) {
      return Optional.empty();
    }
    try (var in = fs.open(file)) {
      return Optional.of(YAML.readTree(in).path("train"));
    }
  }
}
