package io.lorafleet.driver.checkpoint;

import io.lorafleet.datasets.fs.HadoopConf;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;

/**
 * A finished or running run's directory as its readers see it (eval --run, average --run), named by
 * a plain path or a Hadoop URI: its committed checkpoints, whose commit marker is there and names
 * files that are all there at its sizes, and its other adapter directories.
 */
public final class RunFiles {
  /** The running averages' adapters (--ema-decay, --bema) and the best candidate (--metric-for-best-model) of a run directory. */
  public static final String EMA = "ema";
  public static final String BEMA = "bema";
  public static final String BEST = "best";

  private RunFiles() {}

  /** The locations (paths or URIs) of run {@code run}'s committed checkpoints, oldest step first. */
  public static List<String> checkpoints(String run, Configuration conf) throws IOException {
    if (!HadoopConf.remote(run)) {
      return Checkpoints.list(Path.of(run)).stream().map(Path::toString).toList();
    }
    org.apache.hadoop.fs.Path dir = new org.apache.hadoop.fs.Path(run);
    return committed(dir.getFileSystem(conf), dir).stream().map(n -> new org.apache.hadoop.fs.Path(dir, n).toString()).toList();
  }

  /** run/name's location if it is a directory. */
  public static Optional<String> directory(String run, String name, Configuration conf) throws IOException {
    if (!HadoopConf.remote(run)) {
      Path p = Path.of(run).resolve(name);
      return Files.isDirectory(p) ? Optional.of(p.toString()) : Optional.empty();
    }
    org.apache.hadoop.fs.Path p = new org.apache.hadoop.fs.Path(run, name);
    FileSystem fs = p.getFileSystem(conf);
    return fs.exists(p) && fs.getFileStatus(p).isDirectory() ? Optional.of(p.toString()) : Optional.empty();
  }

  /** The step of a checkpoint location (its last path element, checkpoint-STEP). */
  public static int stepOf(String checkpoint) {
    String name = new org.apache.hadoop.fs.Path(checkpoint).getName();
    return Checkpoints.stepOf(name).orElseThrow(() -> new IllegalArgumentException(checkpoint + " is not a checkpoint directory"));
  }

  /** The names of the committed checkpoint directories under {@code run} on {@code fs}, oldest step first. */
  static List<String> committed(FileSystem fs, org.apache.hadoop.fs.Path run) throws IOException {
    List<String> out = new ArrayList<>();
    if (!fs.exists(run)) {
      return out;
    }
    for (FileStatus st : fs.listStatus(run)) {
      String n = st.getPath().getName();
      if (st.isDirectory() && Checkpoints.stepOf(n).isPresent() && isCommitted(fs, st.getPath())) {
        out.add(n);
      }
    }
    out.sort(Comparator.comparingInt(n -> Checkpoints.stepOf(n).getAsInt()));
    return out;
  }

  /** True when {@code dir} holds a commit marker and every file it names, at the size it names. */
  static boolean isCommitted(FileSystem fs, org.apache.hadoop.fs.Path dir) throws IOException {
    byte[] marker;
    try (InputStream in = fs.open(new org.apache.hadoop.fs.Path(dir, Checkpoints.COMMIT))) {
      marker = in.readAllBytes();
    } catch (java.io.FileNotFoundException e) {
      return false;
    }
    Optional<Map<String, Long>> sizes = Checkpoints.committedSizes(marker);
    if (sizes.isEmpty()) {
      return false;
    }
    Map<String, Long> present = new HashMap<>();
    for (FileStatus f : fs.listStatus(dir)) {
      present.put(f.getPath().getName(), f.getLen());
    }
    return sizes.get().entrySet().stream().allMatch(e -> e.getValue().equals(present.get(e.getKey())));
  }
}
