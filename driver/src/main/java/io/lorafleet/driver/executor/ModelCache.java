package io.lorafleet.driver.executor;

import ai.djl.Device;
import io.lorafleet.datasets.arrow.SplitReader;
import io.lorafleet.datasets.arrow.TokenLimits;
import io.lorafleet.worker.model.Labels;
import io.lorafleet.worker.model.ModelConfig;
import io.lorafleet.worker.model.ModelSkeleton;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.Djl;
import io.lorafleet.worker.quant.Quantization;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.concurrent.ConcurrentHashMap;

/** Per-executor-JVM caches: the frozen base is loaded once, whatever the number of stages and attempts; splits are opened once. */
public final class ModelCache {
  private static final ConcurrentHashMap<String, LanguageModel> MODELS = new ConcurrentHashMap<>();
  private static final ConcurrentHashMap<String, ModelSkeleton> SKELETONS = new ConcurrentHashMap<>();
  private static final ConcurrentHashMap<String, SplitReader> SPLITS = new ConcurrentHashMap<>();

  private ModelCache() {}

  /** The base's structure (config.json and safetensors headers), without weights: what the driver holds. */
  public static ModelSkeleton skeleton(String dir) {
    return skeleton(dir, io.lorafleet.datasets.fs.HadoopConf.current());
  }

  /** As {@link #skeleton(String)}; a Hadoop URI's headers are read remotely. */
  public static ModelSkeleton skeleton(String dir, org.apache.hadoop.conf.Configuration conf) {
    return skeleton(dir, conf, Labels.FROM_CONFIG);
  }

  /** As {@link #skeleton(String, org.apache.hadoop.conf.Configuration)}, a classifier with {@code labels} instead of config.json's. */
  public static ModelSkeleton skeleton(String dir, org.apache.hadoop.conf.Configuration conf, Labels labels) {
    return SKELETONS.computeIfAbsent(dir + "@" + labels, d -> {
      if (!ModelFiles.remote(dir)) {
        return ModelSkeleton.read(Path.of(dir), labels);
      }
      try {
        return ModelFiles.skeleton(dir, conf, labels);
      } catch (IOException e) {
        throw new UncheckedIOException("--model " + dir + ": " + e.getMessage(), e);
      }
    });
  }

  /** The loaded base of {@code dir}, a local directory or a Hadoop URI (copied once to this node first), quantized as asked. */
  public static LanguageModel model(String dir, Device device, org.apache.hadoop.conf.Configuration conf, Quantization quantize) {
    return model(dir, device, conf, quantize, Labels.FROM_CONFIG);
  }

  /** As {@link #model(String, Device, org.apache.hadoop.conf.Configuration, Quantization)}, a classifier with {@code labels} instead of config.json's. */
  public static LanguageModel model(String dir, Device device, org.apache.hadoop.conf.Configuration conf, Quantization quantize, Labels labels) {
    String local = ModelFiles.remote(dir) ? ModelFiles.local(dir, conf).toString() : dir;
    var dtype = Djl.computeDtype(device);
    return MODELS.computeIfAbsent(local + "@" + device + "@" + dtype + "@" + quantize.tag() + "@" + labels,
        k -> LanguageModel.load(Path.of(local), device, dtype, quantize, labels));
  }

  public static LanguageModel model(String dir, Device device, Quantization quantize) {
    return model(dir, device, new org.apache.hadoop.conf.Configuration(false), quantize, Labels.FROM_CONFIG);
  }

  /**
   * A split for random access, shared by the tasks of this JVM; rows are checked against what
   * {@code model} accepts as they are decoded. It keeps {@code cacheBlocks} decoded batches.
   * {@code dataset} (the manifest's fingerprint) tells a split prepared again at the same path.
   */
  public static SplitReader split(String splitDir, String dataset, ModelConfig model, org.apache.hadoop.conf.Configuration conf, int cacheBlocks) {
    TokenLimits limits = TokenLimits.of(model);
    String key = splitDir + "|" + limits + "|" + cacheBlocks;
    SplitReader cached = SPLITS.get(key + "|" + dataset);
    if (cached != null) {
      return cached;
    }
    SPLITS.keySet().removeIf(k -> k.startsWith(key + "|")); // the same path prepared again: drop the old reader and its batches
    return SPLITS.computeIfAbsent(key + "|" + dataset, k -> {
      try {
        return SplitReader.open(splitDir, conf, limits, cacheBlocks);
      } catch (IOException e) {
        throw new UncheckedIOException(splitDir + ": " + e.getMessage(), e);
      }
    });
  }

  /**
   * Closes and forgets every loaded base (their native weights) and split: for an executor done with
   * them, and for the test harness between test classes. No task may be using them.
   */
  public static void clear() {
    MODELS.values().forEach(LanguageModel::close);
    MODELS.clear();
    SPLITS.clear();
  }
}
