package io.lorafleet.driver.checkpoint;

import java.io.IOException;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.NoSuchFileException;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;

/**
 * Where a run writes. A plain path is written directly. A URI with a scheme (hdfs://, s3a://,
 * file://, any Hadoop filesystem) is staged in a local directory and each finished piece is
 * published through the Hadoop FileSystem API. A checkpoint is uploaded file by file into its
 * directory, its commit marker last ({@link Checkpoints#COMMIT}), so that no rename is needed and a
 * reader never takes half a checkpoint, on HDFS and on an object store alike; other pieces are
 * copied under a temporary name, then renamed into place. Retention deletions are mirrored (the
 * marker first), and resume pulls the committed remote checkpoints into the stage first.
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

  /** True when the run writes into a local stage that is published to a Hadoop URI; false for a plain path, written directly. */
  public boolean isStaged() {
    return fs != null;
  }

  /** The output as the user named it. */
  public String uri() {
    return fs == null ? local.toString() : remote.toString();
  }

  /** The names in the output (not the local stage), hidden temporaries included. */
  public List<String> entries() throws IOException {
    List<String> names = new ArrayList<>();
    if (fs == null) {
      try (var s = Files.list(local)) {
        s.forEach(p -> names.add(p.getFileName().toString()));
      }
    } else {
      for (FileStatus st : fs.listStatus(remote)) {
        names.add(st.getPath().getName());
      }
    }
    names.sort(null);
    return names;
  }

  /** Deletes every entry of the output but {@code keep} (and clears the local stage). */
  public void clear(String keep) throws IOException {
    for (String n : entries()) {
      if (!n.equals(keep)) {
        delete(n);
      }
    }
    if (fs != null) {
      try (var s = Files.list(local)) {
        for (Path p : s.toList()) {
          Checkpoints.deleteTree(p);
        }
      }
    }
  }

  /** Removes temporaries (".tmp-*") a crashed writer left in the output and its stage. */
  public void cleanTemporaries() throws IOException {
    for (String n : entries()) {
      if (n.startsWith(".tmp-")) {
        delete(n);
      }
    }
    if (fs != null) {
      try (var s = Files.list(local)) {
        for (Path p : s.filter(p -> p.getFileName().toString().startsWith(".tmp-")).toList()) {
          Checkpoints.deleteTree(p);
        }
      }
    }
  }

  /** Creates {@code name} holding {@code bytes} unless it exists; atomic on POSIX and HDFS. */
  public boolean createExclusive(String name, byte[] bytes) throws IOException {
    if (fs == null) {
      try {
        Files.write(local.resolve(name), bytes, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE);
        return true;
      } catch (FileAlreadyExistsException e) {
        return false;
      }
    }
    try (var o = fs.create(new org.apache.hadoop.fs.Path(remote, name), false)) {
      o.write(bytes);
      return true;
    } catch (org.apache.hadoop.fs.FileAlreadyExistsException e) {
      return false;
    } catch (IOException e) {
      if (fs.exists(new org.apache.hadoop.fs.Path(remote, name))) {
        return false;
      }
      throw e;
    }
  }

  /** The bytes of file {@code name} in the output, or empty if it is absent. */
  public Optional<byte[]> read(String name) throws IOException {
    if (fs == null) {
      try {
        return Optional.of(Files.readAllBytes(local.resolve(name)));
      } catch (NoSuchFileException e) {
        return Optional.empty();
      }
    }
    org.apache.hadoop.fs.Path p = new org.apache.hadoop.fs.Path(remote, name);
    try (var in = fs.open(p)) {
      return Optional.of(in.readAllBytes());
    } catch (java.io.FileNotFoundException e) {
      return Optional.empty();
    }
  }

  /** Replaces file {@code name} in the output by {@code bytes}, through a temporary and a rename. */
  public void replace(String name, byte[] bytes) throws IOException {
    if (fs == null) {
      Path tmp = local.resolve(".tmp-" + name);
      Files.write(tmp, bytes);
      Files.move(tmp, local.resolve(name), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
      return;
    }
    org.apache.hadoop.fs.Path tmp = new org.apache.hadoop.fs.Path(remote, ".tmp-" + name);
    try (var o = fs.create(tmp, true)) {
      o.write(bytes);
    }
    fs.delete(new org.apache.hadoop.fs.Path(remote, name), false);
    if (!fs.rename(tmp, new org.apache.hadoop.fs.Path(remote, name))) {
      throw new IOException("cannot rename " + tmp + " to " + name);
    }
  }

  /** Deletes {@code name} (a file or a directory) from the output. */
  public void delete(String name) throws IOException {
    if (fs == null) {
      Checkpoints.deleteTree(local.resolve(name));
    } else {
      fs.delete(new org.apache.hadoop.fs.Path(remote, name), true);
    }
  }

  /** Copies file {@code name} from the output into the stage, if it exists there (a no-op for plain paths). */
  public void pull(String name) throws IOException {
    if (fs == null) {
      return;
    }
    org.apache.hadoop.fs.Path p = new org.apache.hadoop.fs.Path(remote, name);
    if (fs.exists(p)) {
      Files.deleteIfExists(local.resolve(name));
      fs.copyToLocalFile(false, p, new org.apache.hadoop.fs.Path(local.resolve(name).toUri()), true);
    }
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

  /**
   * Publishes checkpoint directory local()/name: any remote one of that name is pruned, then every
   * file is uploaded in place and the commit marker last. A crash between uploads leaves a
   * directory without a marker, which no reader takes and the next prune or publish removes.
   *
   * @param afterFirstFile runs once the first file is uploaded (the fault-injection hook)
   */
  public void publishCheckpoint(String name, Runnable afterFirstFile) throws IOException {
    if (fs == null) {
      return;
    }
    org.apache.hadoop.fs.Path dir = new org.apache.hadoop.fs.Path(remote, name);
    prune(dir);
    fs.mkdirs(dir);
    try (var s = Files.list(local.resolve(name))) {
      boolean first = true;
      for (Path f : s.filter(f -> !f.getFileName().toString().equals(Checkpoints.COMMIT)).sorted().toList()) {
        fs.copyFromLocalFile(false, true, new org.apache.hadoop.fs.Path(f.toUri()), new org.apache.hadoop.fs.Path(dir, f.getFileName().toString()));
        if (first) {
          afterFirstFile.run();
          first = false;
        }
      }
    }
    fs.copyFromLocalFile(false, true, new org.apache.hadoop.fs.Path(local.resolve(name).resolve(Checkpoints.COMMIT).toUri()),
        new org.apache.hadoop.fs.Path(dir, Checkpoints.COMMIT));
  }

  private void prune(org.apache.hadoop.fs.Path dir) throws IOException {
    fs.delete(new org.apache.hadoop.fs.Path(dir, Checkpoints.COMMIT), false);
    fs.delete(dir, true);
  }

  /** Publishes every entry of the stage (a no-op for plain paths): what a command that writes a whole directory calls last. */
  public void publishAll() throws IOException {
    if (fs == null) {
      return;
    }
    try (var s = Files.list(local)) {
      for (Path p : s.sorted().toList()) {
        publish(p.getFileName().toString());
      }
    }
  }

  /** Mirrors retention: remote checkpoint-* directories that are not committed locally are deleted, each its marker first. */
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
      if (Checkpoints.stepOf(n).isPresent() && !keep.contains(n)) {
        prune(st.getPath());
      }
    }
  }

  /** The names of the output's committed checkpoints, oldest step first. */
  public List<String> committedCheckpoints() throws IOException {
    if (fs == null) {
      return Checkpoints.list(local).stream().map(p -> p.getFileName().toString()).toList();
    }
    return RunFiles.committed(fs, remote);
  }

  /** Copies the committed remote checkpoints into the stage (for --resume and relaunches). */
  public void pullCheckpoints() throws IOException {
    if (fs == null) {
      return;
    }
    for (String n : RunFiles.committed(fs, remote)) {
      if (!Files.exists(local.resolve(n))) {
        fs.copyToLocalFile(false, new org.apache.hadoop.fs.Path(remote, n), new org.apache.hadoop.fs.Path(local.toUri()), true);
      }
    }
  }
}
