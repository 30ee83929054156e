package io.lorafleet.datasets.fs;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.security.DigestInputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Comparator;
import java.util.HexFormat;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.function.Predicate;
import java.util.stream.Stream;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;

/**
 * A directory given as a Hadoop URI, made local on this node: its files (those a {@link Kind} takes;
 * no subdirectories) copied once per node into a cache ({@code -Dlorafleet.model.cache}, default
 * {@code <tmp>/lorafleet-model-cache}) under a file lock, so the JVMs of a node copy it once between
 * them. Every file's SHA-256 is computed while it is copied and again from the written copy, and its
 * size checked against the source's, before the copy is renamed into place with a manifest. A cached
 * copy is used while its files' names and sizes match the source's. A plain path is returned as it is.
 */
public final class NodeCopy {
  public static final String MANIFEST = ".lorafleet-cache.json";
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final Object JVM_LOCK = new Object(); // FileLock excludes other JVMs, not this one's threads

  /** Which files of a directory a copy takes, and a name for the copy's cache key. */
  public record Kind(String name, Predicate<String> takes) {
    /** Every file: a model, an adapter, a checkpoint. */
    public static final Kind ALL = new Kind("all", f -> true);
    /** A PEFT adapter's files (adapter_config.json, adapter_model.safetensors) and no more: of a checkpoint, not its optimizer state. */
    public static final Kind ADAPTER = new Kind("adapter", f -> f.startsWith("adapter_"));
    /** The small files a tokenizer and a model's config need, never the weights. */
    public static final Kind TOKENIZER = new Kind("tokenizer",
        Set.of("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json", "generation_config.json")::contains);
  }

  private NodeCopy() {}

  /** {@code dir} on this node: the path itself, or this node's verified copy of the URI's files of {@code kind}. */
  public static Path of(String dir, Kind kind, Configuration conf) {
    if (!HadoopConf.remote(dir)) {
      return Path.of(dir);
    }
    try {
      synchronized (JVM_LOCK) {
        return cached(dir, kind, conf);
      }
    } catch (IOException e) {
      throw new java.io.UncheckedIOException(dir + ": cannot copy it to this node: " + e.getMessage(), e);
    }
  }

  /** As {@link #of(String, Kind, Configuration)} with this JVM's Hadoop configuration. */
  public static Path of(String dir, Kind kind) {
    return HadoopConf.remote(dir) ? of(dir, kind, HadoopConf.current()) : Path.of(dir);
  }

  private static Path cached(String dir, Kind kind, Configuration conf) throws IOException {
    org.apache.hadoop.fs.Path src = new org.apache.hadoop.fs.Path(dir);
    FileSystem fs = src.getFileSystem(conf);
    Map<String, Long> sizes = new TreeMap<>();
    FileStatus[] listing;
    try {
      listing = fs.listStatus(src);
    } catch (java.io.FileNotFoundException e) {
      throw new IllegalArgumentException(dir + ": no such directory");
    }
    for (FileStatus st : listing) {
      String name = st.getPath().getName();
      if (st.isFile() && !name.startsWith(".") && kind.takes().test(name)) {
        sizes.put(name, st.getLen());
      }
    }
    Path root = Path.of(System.getProperty("lorafleet.model.cache", System.getProperty("java.io.tmpdir") + "/lorafleet-model-cache"));
    Files.createDirectories(root);
    String key = sha256((kind.name() + "\n" + dir).getBytes(StandardCharsets.UTF_8)).substring(0, 24);
    Path entry = root.resolve(key);
    try (FileChannel ch = FileChannel.open(root.resolve(key + ".lock"), StandardOpenOption.CREATE, StandardOpenOption.WRITE);
        FileLock lock = ch.lock()) {
      if (valid(entry, sizes)) {
        return entry;
      }
      Path tmp = root.resolve(key + ".tmp");
      deleteTree(tmp);
      Files.createDirectories(tmp);
      ObjectNode manifest = JSON.createObjectNode();
      manifest.put("source", dir);
      ArrayNode files = manifest.putArray("files");
      for (Map.Entry<String, Long> f : sizes.entrySet()) {
        files.addObject().put("name", f.getKey()).put("size", f.getValue()).put("sha256", copy(fs, new org.apache.hadoop.fs.Path(src, f.getKey()),
            tmp.resolve(f.getKey()), f.getValue()));
      }
      Files.writeString(tmp.resolve(MANIFEST), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(manifest));
      deleteTree(entry);
      Files.move(tmp, entry, StandardCopyOption.ATOMIC_MOVE);
      return entry;
    }
  }

  /** Copies one file, checking the copy's size and its SHA-256 against the bytes read; returns that SHA-256. */
  private static String copy(FileSystem fs, org.apache.hadoop.fs.Path from, Path to, long size) throws IOException {
    MessageDigest md = digest();
    try (InputStream in = new DigestInputStream(fs.open(from), md); OutputStream out = Files.newOutputStream(to)) {
      in.transferTo(out);
    }
    String sha = HexFormat.of().formatHex(md.digest());
    if (Files.size(to) != size) {
      throw new IOException(from + ": copied " + Files.size(to) + " bytes but the source holds " + size);
    }
    String written = sha256(to);
    if (!written.equals(sha)) {
      throw new IOException(from + ": the copy's SHA-256 " + written + " differs from the source's " + sha);
    }
    return sha;
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

  /** SHA-256 of a file's bytes, in hex. */
  public static String sha256(Path f) throws IOException {
    MessageDigest md = digest();
    try (InputStream in = new DigestInputStream(Files.newInputStream(f), md)) {
      in.transferTo(OutputStream.nullOutputStream());
    }
    return HexFormat.of().formatHex(md.digest());
  }

  private static String sha256(byte[] bytes) {
    return HexFormat.of().formatHex(digest().digest(bytes));
  }

  private static MessageDigest digest() {
    try {
      return MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  private static void deleteTree(Path p) throws IOException {
    if (!Files.exists(p)) {
      return;
    }
    try (Stream<Path> s = Files.walk(p)) {
      for (Path x : s.sorted(Comparator.reverseOrder()).toList()) {
        Files.delete(x);
      }
    }
  }
}
