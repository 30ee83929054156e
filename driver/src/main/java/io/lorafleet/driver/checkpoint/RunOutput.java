package io.lorafleet.driver.checkpoint;

import java.io.IOException;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Set;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;

/**
 * Where a run writes. A plain path is written directly. A URI with a scheme (hdfs://, s3a://,
 * file://, any Hadoop filesystem) is staged in a local directory and each finished piece is
 * published through the Hadoop FileSystem API: copied under a temporary name, then renamed into
 * place, so a reader never sees half a checkpoint. Retention deletions are mirrored, and resume
 * pulls the remote checkpoints into the stage first.
 */
public final class RunOutput {
  private final Path local;
  private final FileSystem fs;
  private final org.apache.hadoop.fs.Path remote;

  private RunOutput(Path local, FileSystem fs, org.apache.hadoop.fs.Path remote) {
    this.local = local;
    this.fs = fs;
    this.remote = remote;
  }

  public static RunOutput of(String output, Configuration conf) throws IOException {
    URI uri = URI.create(output.replace(" ", "%20"));
    if (uri.getScheme() == null || uri.getScheme().length() == 1) { // a plain (or Windows-drive) path
      Path p = Path.of(output);
      Files.createDirectories(p);
      return new RunOutput(p, null, null);
    }
    org.apache.hadoop.fs.Path remote = new org.apache.hadoop.fs.Path(output);
    FileSystem fs = remote.getFileSystem(conf);
    fs.mkdirs(remote);
    return new RunOutput(Files.createTempDirectory("lorafleet-run-"), fs, remote);
  }

  /** The directory the run writes into (the output itself, or its local stage). */
  public Path local() {
    return local;
  }

  /** Publishes local()/name (a file or a directory) to the remote output, replacing what was there. */
  public void publish(String name) throws IOException {
    if (fs == null || !Files.exists(local.resolve(name))) {
      return;
    }
    org.apache.hadoop.fs.Path tmp = new org.apache.hadoop.fs.Path(remote, ".tmp-" + name);
    org.apache.hadoop.fs.Path fin = new org.apache.hadoop.fs.Path(remote, name);
    fs.delete(tmp, true);
    fs.copyFromLocalFile(false, true, new org.apache.hadoop.fs.Path(local.resolve(name).toUri()), tmp);
    fs.delete(fin, true);
    if (!fs.rename(tmp, fin)) {
      throw new IOException("cannot rename " + tmp + " to " + fin);
    }
  }

  /** Mirrors retention: remote checkpoint-* directories that no longer exist locally are deleted. */
  public void pruneCheckpoints() throws IOException {
    if (fs == null) {
      return;
    }
    Set<String> keep = new HashSet<>();
    for (Path p : Checkpoints.list(local)) {
      keep.add(p.getFileName().toString());
    }
    for (FileStatus st : fs.listStatus(remote)) {
      String n = st.getPath().getName();
      if (n.matches("checkpoint-\\d+") && !keep.contains(n)) {
        fs.delete(st.getPath(), true);
      }
    }
  }

  /** Copies the remote checkpoints into the stage (for --resume and relaunches). */
  public void pullCheckpoints() throws IOException {
    if (fs == null) {
      return;
    }
    for (FileStatus st : fs.listStatus(remote)) {
      String n = st.getPath().getName();
      if (n.matches("checkpoint-\\d+") && !Files.exists(local.resolve(n))) {
        fs.copyToLocalFile(false, st.getPath(), new org.apache.hadoop.fs.Path(local.toUri()), true);
      }
    }
  }
}
