package io.lorafleet.driver.executor;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.worker.model.HfDirectory;
import io.lorafleet.worker.model.ModelConfig;
import io.lorafleet.worker.model.ModelSkeleton;
import io.lorafleet.worker.safetensors.SafetensorsReader;
import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import io.lorafleet.datasets.fs.HadoopConf;
import io.lorafleet.datasets.fs.NodeCopy;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FileSystem;

/**
 * A --model given as a Hadoop URI (hdfs://, s3a://, file://…) rather than a local directory. The
 * driver reads config.json, the tokenizer and the safetensors headers remotely (never the weights).
 * Each executor makes the directory local once per node through {@link NodeCopy}: copied into a
 * local cache under a file lock, every file's size and SHA-256 verified.
 */
public final class ModelFiles {
  private static final ObjectMapper JSON = new ObjectMapper();

  private ModelFiles() {}

  /** True for a URI with a scheme (not a plain path, nor a Windows drive letter). */
  public static boolean remote(String model) {
    return HadoopConf.remote(model);
  }

  /** The model directory on this node: the path itself, or this node's verified copy of the URI. */
  public static Path local(String model, Configuration conf) {
    if (remote(model)) {
      requireConfig(model, conf);
    }
    return NodeCopy.of(model, NodeCopy.Kind.ALL, conf);
  }

  private static void requireConfig(String model, Configuration conf) {
    org.apache.hadoop.fs.Path config = new org.apache.hadoop.fs.Path(model, "config.json");
    try {
      if (!config.getFileSystem(conf).exists(config)) {
        throw new IllegalArgumentException("--model " + model + ": not a Hugging Face model directory, config.json is missing");
      }
    } catch (IOException e) {
      throw new java.io.UncheckedIOException("--model " + model + ": " + e.getMessage(), e);
    }
  }

  /**
   * The driver's view of a remote model: config.json and the safetensors headers, read through
   * positioned reads; no tensor data is read unless a (small) one is asked for.
   */
  public static ModelSkeleton skeleton(String model, Configuration conf, io.lorafleet.worker.model.Labels labels) throws IOException {
    org.apache.hadoop.fs.Path dir = new org.apache.hadoop.fs.Path(model);
    FileSystem fs = dir.getFileSystem(conf);
    ModelConfig config = ModelConfig.fromJson((ObjectNode) JSON.readTree(readAll(fs, new org.apache.hadoop.fs.Path(dir, "config.json"))),
        model + "/config.json");
    Map<String, SafetensorsReader> byTensor = new HashMap<>();
    org.apache.hadoop.fs.Path index = new org.apache.hadoop.fs.Path(dir, HfDirectory.SAFETENSORS_INDEX);
    Map<String, SafetensorsReader> files = new HashMap<>();
    if (fs.exists(index)) {
      JsonNode map = JSON.readTree(readAll(fs, index)).path("weight_map");
      for (var it = map.fields(); it.hasNext(); ) {
        var e = it.next();
        String f = e.getValue().asText();
        if (f.contains("/") || f.contains("\\") || f.equals("..") || f.isEmpty()) {
          throw new IllegalArgumentException(index + ": tensor '" + e.getKey() + "' is mapped to " + e.getValue()
              + ", expected the name of a file in the model directory " + model);
        }
        byTensor.put(e.getKey(), files.computeIfAbsent(f, x -> open(fs, new org.apache.hadoop.fs.Path(dir, x))));
      }
    } else {
      SafetensorsReader r = open(fs, new org.apache.hadoop.fs.Path(dir, HfDirectory.SAFETENSORS));
      r.tensors().keySet().forEach(k -> byTensor.put(k, r));
    }
    return ModelSkeleton.of(model, HfDirectory.withLabels(config, labels, byTensor.keySet(), model), byTensor);
  }

  /** Copies the tokenizer files (small) into a local temporary directory, for the driver's tokenizer check. */
  /** The tokenizer files (small) of a model on this node, for the driver's tokenizer check. */
  public static Path tokenizerDir(String model, Configuration conf) {
    return NodeCopy.of(model, NodeCopy.Kind.TOKENIZER, conf);
  }

  private static SafetensorsReader open(FileSystem fs, org.apache.hadoop.fs.Path p) {
    try {
      long size = fs.getFileStatus(p).getLen();
      return SafetensorsReader.open(p.toString(), size, (pos, buf) -> {
        try (FSDataInputStream in = fs.open(p)) {
          in.readFully(pos, buf.array(), buf.arrayOffset() + buf.position(), buf.remaining());
          buf.position(buf.limit());
        }
      });
    } catch (IOException e) {
      throw new java.io.UncheckedIOException(p + ": " + e.getMessage(), e);
    }
  }

  private static byte[] readAll(FileSystem fs, org.apache.hadoop.fs.Path p) throws IOException {
    try (InputStream in = fs.open(p)) {
      return in.readAllBytes();
    }
  }

}
