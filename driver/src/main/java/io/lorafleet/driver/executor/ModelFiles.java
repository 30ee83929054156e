package io.lorafleet.driver.executor;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.driver.checkpoint.Checkpoints;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.HfDirectory;
import io.lorafleet.worker.model.ModelConfig;
import io.lorafleet.worker.model.ModelSkeleton;
import io.lorafleet.worker.safetensors.SafetensorsReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.URI;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.security.DigestInputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;

/**
 * A --model given as a Hadoop URI (hdfs://, s3a://, file://…) rather than a local directory. The
 * driver reads config.json, the tokenizer and the safetensors headers remotely (never the weights).
 * Each executor copies the directory once per node into a local cache
 * ({@code -Dlorafleet.model.cache}, default {@code <tmp>/lorafleet-model-cache}): under a file lock,
 * so the executors of a node copy it once between them; every file's SHA-256 is computed while it is
 * copied and again from the written copy, and its size checked against the source's, before the
 * copy is renamed into place with a manifest. A cached copy is used while its files' names and sizes
 * match the source's.
 */
public final class ModelFiles {
  public static final String MANIFEST = ".lorafleet-cache.json";
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final Object JVM_LOCK = new Object(); // FileLock excludes other JVMs, not this one's threads

  private ModelFiles() {}

  /** True for a URI with a scheme (not a plain path, nor a Windows drive letter). */
  public static boolean remote(String model) {
    try {
      String scheme = new URI(model.replace(" ", "%20")).getScheme();
      return scheme != null && scheme.length() > 1;
    } catch (java.net.URISyntaxException e) {
      return false;
    }
  }

  /** The model directory on this node: the path itself, or this node's verified copy of the URI. */
  public static Path local(String model, Configuration conf) {
    if (!remote(model)) {
      return Path.of(model);
    }
    try {
      synchronized (JVM_LOCK) {
        return cached(model, conf);
      }
    } catch (IOException e) {
      throw new java.io.UncheckedIOException("--model " + model + ": cannot copy it to this node: " + e.getMessage(), e);
    }
  }

  private static Path cached(String model, Configuration conf) throws IOException {
    org.apache.hadoop.fs.Path src = new org.apache.hadoop.fs.Path(model);
    FileSystem fs = src.getFileSystem(conf);
    Map<String, Long> sizes = new HashMap<>();
    for (FileStatus st : fs.listStatus(src)) {
      if (st.isFile() && !st.getPath().getName().startsWith(".")) {
        sizes.put(st.getPath().getName(), st.getLen());
      }
    }
    if (!sizes.containsKey("config.json")) {
      throw new IllegalArgumentException("--model " + model + ": not a Hugging Face model directory, config.json is missing");
    }
    Path root = Path.of(System.getProperty("lorafleet.model.cache", System.getProperty("java.io.tmpdir") + "/lorafleet-model-cache"));
    Files.createDirectories(root);
    String key = Checkpoints.sha256(model.getBytes(java.nio.charset.StandardCharsets.UTF_8)).substring(0, 24);
    Path entry = root.resolve(key);
    try (FileChannel ch = FileChannel.open(root.resolve(key + ".lock"), StandardOpenOption.CREATE, StandardOpenOption.WRITE);
        FileLock lock = ch.lock()) {
      if (valid(entry, sizes)) {
        return entry;
      }
      Path tmp = root.resolve(key + ".tmp");
      Checkpoints.deleteTree(tmp);
      Files.createDirectories(tmp);
      ObjectNode manifest = JSON.createObjectNode();
      manifest.put("source", model);
      ArrayNode files = manifest.putArray("files");
      for (Map.Entry<String, Long> f : sizes.entrySet()) {
        Path to = tmp.resolve(f.getKey());
        MessageDigest md = digest();
        try (InputStream in = new DigestInputStream(fs.open(new org.apache.hadoop.fs.Path(src, f.getKey())), md);
            OutputStream out = Files.newOutputStream(to)) {
          in.transferTo(out);
        }
        String sha = HexFormat.of().formatHex(md.digest());
        if (Files.size(to) != f.getValue()) {
          throw new IOException(f.getKey() + ": copied " + Files.size(to) + " bytes but the source holds " + f.getValue());
        }
        String written = Checkpoints.sha256(to);
        if (!written.equals(sha)) {
          throw new IOException(f.getKey() + ": the copy's SHA-256 " + written + " differs from the source's " + sha);
        }
        files.addObject().put("name", f.getKey()).put("size", f.getValue()).put("sha256", sha);
      }
      Files.writeString(tmp.resolve(MANIFEST), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(manifest));
      Checkpoints.deleteTree(entry);
      Files.move(tmp, entry, StandardCopyOption.ATOMIC_MOVE);
      return entry;
    }
  }

  /** A cached copy is complete when its manifest lists exactly the source's files, at the source's sizes, and the files are there at those sizes. */
  static boolean valid(Path entry, Map<String, Long> sizes) throws IOException {
    Path m = entry.resolve(MANIFEST);
    if (!Files.isRegularFile(m)) {
      return false;
    }
    JsonNode files = JSON.readTree(m.toFile()).path("files");
    if (files.size() != sizes.size()) {
      return false;
    }
    for (JsonNode f : files) {
      String name = f.path("name").asText();
      Path p = entry.resolve(name);
      if (!sizes.containsKey(name) || sizes.get(name) != f.path("size").asLong() || !Files.isRegularFile(p) || Files.size(p) != sizes.get(name)) {
        return false;
      }
    }
    return true;
  }

  /**
   * The driver's view of a remote model: config.json and the safetensors headers, read through
   * positioned reads; no tensor data is read unless a (small) one is asked for.
   */
  public static ModelSkeleton skeleton(String model, Configuration conf) throws IOException {
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
    return ModelSkeleton.of(model, config, byTensor);
  }

  /** Copies the tokenizer files (small) into a local temporary directory, for the driver's tokenizer check. */
  public static Path tokenizerDir(String model, Configuration conf) throws IOException {
    if (!remote(model)) {
      return Path.of(model);
    }
    org.apache.hadoop.fs.Path dir = new org.apache.hadoop.fs.Path(model);
    FileSystem fs = dir.getFileSystem(conf);
    Path tmp = Files.createTempDirectory("lorafleet-tokenizer-");
    for (String f : new String[] {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json"}) {
      org.apache.hadoop.fs.Path p = new org.apache.hadoop.fs.Path(dir, f);
      if (fs.exists(p)) {
        Files.write(tmp.resolve(f), readAll(fs, p));
      }
    }
    return tmp;
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

  private static MessageDigest digest() {
    try {
      return MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

}
