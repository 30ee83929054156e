package io.lorafleet.driver.checkpoint;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.safetensors.SafetensorsReader;
import io.lorafleet.worker.safetensors.SafetensorsWriter;
import io.lorafleet.worker.safetensors.Tensor;
import io.lorafleet.worker.model.BaseModel;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.StandardOpenOption;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Comparator;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * checkpoint-&lt;step&gt;/ directories: the PEFT adapter plus optimizer.safetensors (AdamW moments)
 * and trainer_state.json (step, optimizer step count, seed, data cursor, SHA-256 of both tensor
 * files). A checkpoint exists only once its commit marker {@value #COMMIT} does: written last, it
 * names every other file with its size and SHA-256. Locally the checkpoint is also written into a
 * hidden temporary directory and renamed into place; on a Hadoop filesystem its files are uploaded
 * in place and the marker last ({@link RunOutput}), which needs no atomic rename and so holds on an
 * object store too. A directory without a marker whose files match it does not exist for --resume,
 * eval --run or average; pruning deletes the marker first. On resume a checkpoint whose checksums
 * fail is skipped with a warning.
 */
public final class Checkpoints {
  private static final Logger LOG = LoggerFactory.getLogger(Checkpoints.class);
  public static final String STATE = "trainer_state.json";
  public static final String OPTIMIZER = "optimizer.safetensors";
  /** The commit marker: {"files": [{"name", "size", "sha256"}…]}, every other file of the checkpoint. */
  public static final String COMMIT = "_committed.json";
  private static final ObjectMapper JSON = new ObjectMapper();

  private Checkpoints() {}

  /** What a checkpoint restores; {@code job} is what the run was (see trainer_state.json's "job"). */
  public record State(int step, float[] params, float[] m, float[] v, long optimizerSteps, double lossScale, int lossScaleCleanSteps, JsonNode job,
      Path dir, Map<String, float[]> extra, JsonNode trainerState) {}

  /** What the driver saves at a step: the adapter, AdamW's moments and step count, the data cursor and the fp16 loss scale. */
  public record Snapshot(int step, float[] params, float[] m, float[] v, long optimizerSteps, long seed, long cursor, double lossScale,
      int lossScaleCleanSteps, Map<String, float[]> extra, ObjectNode extraState, Map<String, String> files) {
    /** Without optimizer state beyond AdamW's and without other files. */
    public Snapshot(int step, float[] params, float[] m, float[] v, long optimizerSteps, long seed, long cursor, double lossScale,
        int lossScaleCleanSteps) {
      this(step, params, m, v, optimizerSteps, seed, cursor, lossScale, lossScaleCleanSteps, Map.of(), JSON.createObjectNode(), Map.of());
    }
  }

  /** A checkpoint directory's name, as HF Trainer names it: the one place "checkpoint-" is spelled. */
  private static final String PREFIX = "checkpoint-";

  /** The name of the checkpoint directory of {@code step}: checkpoint-STEP. */
  public static String dirName(int step) {
    return PREFIX + step;
  }

  /** The step a checkpoint directory's name holds, if {@code name} is one (checkpoint-STEP). */
  public static java.util.OptionalInt stepOf(String name) {
    return name.matches(PREFIX + "\\d{1,9}") ? java.util.OptionalInt.of(Integer.parseInt(name.substring(PREFIX.length()))) : java.util.OptionalInt.empty();
  }

  /** The step of checkpoint directory {@code dir}, which must be one. */
  public static int stepOf(Path dir) {
    String n = dir.getFileName().toString();
    return stepOf(n).orElseThrow(() -> new IllegalArgumentException(dir + " is not a checkpoint directory (" + PREFIX + "STEP)"));
  }

  public static Path dirFor(Path output, int step) {
    return output.resolve(dirName(step));
  }

  /**
   * Writes checkpoint-&lt;step&gt; durably: every file into a hidden temporary directory, each file and
   * the directory fsynced, renamed into place, and the output directory fsynced, before any older
   * checkpoint beyond {@code keep} is pruned. A crash at any point leaves the previous checkpoints
   * intact and at worst a temporary that the next run removes.
   *
   * @param job the run's identity, compared on --resume
   * @param afterAdapter runs between the adapter and the rest (the fault-injection hook)
   */
  public static void write(Path output, LoraModel lora, Snapshot s, JsonNode job, int keep, Runnable afterAdapter) throws IOException {
    Path fin = dirFor(output, s.step());
    Path tmp = output.resolve(".tmp-" + fin.getFileName());
    deleteTree(tmp);
    Files.createDirectories(tmp);
    AdapterFormat.write(tmp, lora, s.params(), Map.of("lorafleet.step", Integer.toString(s.step())));
    afterAdapter.run();
    Map<String, Tensor> opt = new java.util.TreeMap<>();
    opt.put("exp_avg", Tensor.ofFloats(s.m(), s.m().length));
    opt.put("exp_avg_sq", Tensor.ofFloats(s.v(), s.v().length));
    s.extra().forEach((k, v) -> opt.put(k, Tensor.ofFloats(v, v.length)));
    SafetensorsWriter.write(tmp.resolve(OPTIMIZER), opt, Map.of());
    ObjectNode st = JSON.createObjectNode();
    st.put("step", s.step());
    st.put("optimizer_steps", s.optimizerSteps());
    st.put("seed", s.seed());
    st.put("data_cursor", s.cursor());
    st.put("loss_scale", s.lossScale());
    st.put("loss_scale_clean_steps", s.lossScaleCleanSteps());
    st.setAll(s.extraState());
    for (Map.Entry<String, String> f : s.files().entrySet()) { // the run's resolved configuration, and the like
      Files.writeString(tmp.resolve(f.getKey()), f.getValue());
    }
    st.put("adapter_sha256", sha256(tmp.resolve(AdapterFormat.WEIGHTS)));
    st.put("optimizer_sha256", sha256(tmp.resolve(OPTIMIZER)));
    st.set("job", job);
    Files.writeString(tmp.resolve(STATE), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(st));
    try (Stream<Path> files = Files.list(tmp)) {
      for (Path f : files.toList()) {
        fsync(f);
      }
    }
    Files.write(tmp.resolve(COMMIT), commitMarker(tmp));
    fsync(tmp.resolve(COMMIT));
    fsync(tmp);
    prune(fin);
    Files.move(tmp, fin, StandardCopyOption.ATOMIC_MOVE);
    fsync(output);
    List<Path> all = list(output);
    for (int i = 0; i + keep < all.size(); i++) {
      prune(all.get(i));
    }
  }

  /** Deletes a checkpoint directory, its commit marker first: from then on it no longer exists, whatever is left of it. */
  public static void prune(Path dir) throws IOException {
    Files.deleteIfExists(dir.resolve(COMMIT));
    deleteTree(dir);
  }

  /** The commit marker of directory {@code dir}: every file in it with its size and SHA-256. */
  static byte[] commitMarker(Path dir) throws IOException {
    ObjectNode m = JSON.createObjectNode();
    var files = m.putArray("files");
    try (Stream<Path> s = Files.list(dir)) {
      for (Path f : s.filter(f -> !f.getFileName().toString().equals(COMMIT)).sorted().toList()) {
        files.addObject().put("name", f.getFileName().toString()).put("size", Files.size(f)).put("sha256", sha256(f));
      }
    }
    return JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(m);
  }

  /**
   * The files a commit marker names, with their sizes, if {@code marker} is one (JSON with a "files"
   * array of names without a path and sizes); empty for anything else.
   */
  public static Optional<Map<String, Long>> committedSizes(byte[] marker) {
    try {
      JsonNode files = JSON.readTree(marker).path("files");
      if (!files.isArray() || files.isEmpty()) {
        return Optional.empty();
      }
      Map<String, Long> sizes = new java.util.TreeMap<>();
      for (JsonNode f : files) {
        String name = f.path("name").asText("");
        if (name.isEmpty() || name.contains("/") || name.contains("\\") || name.equals("..") || !f.path("size").canConvertToLong()) {
          return Optional.empty();
        }
        sizes.put(name, f.path("size").asLong());
      }
      return Optional.of(sizes);
    } catch (IOException e) {
      return Optional.empty();
    }
  }

  /** True when {@code dir} holds a commit marker and every file it names, at the size it names. */
  static boolean committed(Path dir) {
    try {
      Path marker = dir.resolve(COMMIT);
      if (!Files.isRegularFile(marker)) {
        return false;
      }
      Optional<Map<String, Long>> sizes = committedSizes(Files.readAllBytes(marker));
      if (sizes.isEmpty()) {
        return false;
      }
      for (Map.Entry<String, Long> f : sizes.get().entrySet()) {
        Path p = dir.resolve(f.getKey());
        if (!Files.isRegularFile(p) || Files.size(p) != f.getValue()) {
          return false;
        }
      }
      return true;
    } catch (IOException e) {
      return false;
    }
  }

  /** Checks every file of a committed checkpoint against its marker's SHA-256. */
  private static void verify(Path dir) throws IOException {
    for (JsonNode f : JSON.readTree(dir.resolve(COMMIT).toFile()).path("files")) {
      String name = f.path("name").asText();
      if (!f.path("sha256").asText().equals(sha256(dir.resolve(name)))) {
        throw new IOException(name + ": its SHA-256 differs from the commit marker's");
      }
    }
  }

  /** Forces a file's or a directory's contents (a directory: its entries) to stable storage. */
  static void fsync(Path p) throws IOException {
    try (FileChannel ch = FileChannel.open(p, StandardOpenOption.READ)) {
      ch.force(true);
    }
  }

  /** Committed checkpoint-* directories, oldest step first. */
  public static List<Path> list(Path output) throws IOException {
    if (!Files.isDirectory(output)) {
      return List.of();
    }
    try (Stream<Path> s = Files.list(output)) {
      return s.filter(p -> stepOf(p.getFileName().toString()).isPresent() && Files.isDirectory(p) && committed(p))
          .sorted(Comparator.comparingInt(Checkpoints::stepOf))
          .toList();
    }
  }

  /** The newest checkpoint whose files verify; corrupt ones are skipped with a warning. */
  public static Optional<State> latestValid(Path output, BaseModel base) throws IOException {
    List<Path> all = list(output);
    for (int i = all.size() - 1; i >= 0; i--) {
      Path d = all.get(i);
      try {
        verify(d);
        JsonNode st = JSON.readTree(d.resolve(STATE).toFile());
        if (!st.path("adapter_sha256").asText().equals(sha256(d.resolve(AdapterFormat.WEIGHTS)))
            || !st.path("optimizer_sha256").asText().equals(sha256(d.resolve(OPTIMIZER)))) {
          throw new IOException("checksum mismatch");
        }
        AdapterFormat.Loaded a = AdapterFormat.read(d, base);
        SafetensorsReader o = SafetensorsReader.open(d.resolve(OPTIMIZER));
        Map<String, float[]> extra = new java.util.TreeMap<>();
        for (String k : o.tensors().keySet()) {
          if (!k.equals("exp_avg") && !k.equals("exp_avg_sq")) {
            extra.put(k, o.read(k).toFloatArray());
          }
        }
        return Optional.of(new State(st.get("step").asInt(), a.values(), o.read("exp_avg").toFloatArray(), o.read("exp_avg_sq").toFloatArray(),
            st.get("optimizer_steps").asLong(), st.path("loss_scale").asDouble(io.lorafleet.driver.optim.LossScaler.INITIAL),
            st.path("loss_scale_clean_steps").asInt(0), st.path("job"), d, extra, st));
      } catch (IOException | RuntimeException e) {
        LOG.warn("skipping corrupt checkpoint {}: {}", d, e.getMessage());
        org.slf4j.LoggerFactory.getLogger(Checkpoints.class).warn("skipping corrupt checkpoint {}: {}", d, e.getMessage());
      }
    }
    return Optional.empty();
  }

  /** SHA-256 of a file's bytes, in hex. */
  public static String sha256(Path f) throws IOException {
    return io.lorafleet.datasets.fs.NodeCopy.sha256(f);
  }

  /** SHA-256 of {@code bytes}, in hex. */
  public static String sha256(byte[] bytes) {
    try {
      return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  public static void deleteTree(Path p) throws IOException {
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
