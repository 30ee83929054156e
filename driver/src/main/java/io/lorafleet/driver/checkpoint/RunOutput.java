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
      for (FileStatus st : listing()) {
        names.add(st.getPath().getName());
      }
    }
    names.sort(null);
    return names;
  }

  /** The remote output's entries; none where it does not exist yet (on an object store, a prefix that holds no object). */
  private FileStatus[] listing() throws IOException {
    try {
      return fs.listStatus(remote);
    } catch (java.io.FileNotFoundException e) {
      return new FileStatus[0];
    }
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

  /**
   * Creates {@code name} holding {@code bytes} unless it exists. Atomic where the store refuses a
   * second exclusive create itself: POSIX, HDFS, and S3 stores that honour If-None-Match: * (S3A
   * sends it for a create without overwrite; it is asked to skip its own existence check, which would
   * only race). {@link #refusesSecondCreate} says whether this store does.
   */
  public boolean createExclusive(String name, byte[] bytes) throws IOException {
    if (fs == null) {
      try {
        Files.write(local.resolve(name), bytes, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE);
        return true;
      } catch (FileAlreadyExistsException e) {
        return false;
      }
    }
    org.apache.hadoop.fs.Path p = new org.apache.hadoop.fs.Path(remote, name);
    try (var o = (org.apache.hadoop.fs.FSDataOutputStream) fs.createFile(p).overwrite(false).opt(S3A_SKIP_EXISTENCE_CHECK, true).build()) {
      o.write(bytes);
    } catch (org.apache.hadoop.fs.FileAlreadyExistsException e) {
      return false;
    } catch (IOException e) {
      if (fs.exists(p)) {
        return false; // S3A: 412 Precondition Failed at close, when the object was there
      }
      throw e;
    }
    return true;
  }

  /** S3A's create option that skips its HEAD and LIST checks before a create; other stores ignore it. */
  private static final String S3A_SKIP_EXISTENCE_CHECK = "fs.s3a.create.performance";

  /**
   * Whether this store refuses a second exclusive create of one file, probed on a scratch file of
   * the output (true for a plain path). Many S3-compatible servers accept If-None-Match and ignore
   * it: there a lock file would be a check-then-write race.
   */
  public boolean refusesSecondCreate() throws IOException {
    if (fs == null) {
      return true;
    }
    String probe = ".lorafleet-create-probe-" + java.util.UUID.randomUUID();
    try {
      if (!createExclusive(probe, new byte[] {1})) {
        throw new IOException(remote + ": the first exclusive create of the fresh file " + probe + " was refused");
      }
      return !createExclusive(probe, new byte[] {2});
    } finally {
      fs.delete(new org.apache.hadoop.fs.Path(remote, probe), false);
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
    upload(local.resolve(name), tmp);
    fs.delete(fin, true);
    if (!fs.rename(tmp, fin)) {
      throw new IOException("cannot rename " + tmp + " to " + fin);
    }
  }

  /**
   * Publishes checkpoint directory local()/name: any remote one of that name is pruned, then every
   * file is uploaded in place and the commit marker last. A crash between uploads leaves a
   * directory without a marker, which no reader takes and the next prune or publish removes. A
   * checkpoint already committed there with the same marker is left as it is.
   *
   * @param afterFirstFile runs once the first file is uploaded (the fault-injection hook)
   */
  public void publishCheckpoint(String name, Runnable afterFirstFile) throws IOException {
    if (fs == null) {
      return;
    }
    org.apache.hadoop.fs.Path dir = new org.apache.hadoop.fs.Path(remote, name);
    byte[] marker = Files.readAllBytes(local.resolve(name).resolve(Checkpoints.COMMIT));
    if (RunFiles.isCommitted(fs, dir) && java.util.Arrays.equals(marker, readRemote(new org.apache.hadoop.fs.Path(dir, Checkpoints.COMMIT)))) {
      return; // a retry after a later step of the same write failed: this very checkpoint is committed there, and is never taken down
    }
    prune(dir);
    fs.mkdirs(dir);
    try (var s = Files.list(local.resolve(name))) {
      boolean first = true;
      for (Path f : s.filter(f -> !f.getFileName().toString().equals(Checkpoints.COMMIT)).sorted().toList()) {
        upload(f, new org.apache.hadoop.fs.Path(dir, f.getFileName().toString()));
        if (first) {
          afterFirstFile.run();
          first = false;
        }
      }
    }
    upload(local.resolve(name).resolve(Checkpoints.COMMIT), new org.apache.hadoop.fs.Path(dir, Checkpoints.COMMIT));
  }

  private byte[] readRemote(org.apache.hadoop.fs.Path p) throws IOException {
    try (var in = fs.open(p)) {
      return in.readAllBytes();
    }
  }

  /**
   * Copies a local file, or a directory and everything in it, to {@code to} through output streams:
   * on an object store each file is one upload (multipart past fs.s3a.multipart.size), as any
   * S3-compatible store takes it.
   */
  private void upload(Path from, org.apache.hadoop.fs.Path to) throws IOException {
    if (Files.isDirectory(from)) {
      fs.mkdirs(to);
      try (var s = Files.list(from)) {
        for (Path f : s.sorted().toList()) {
          upload(f, new org.apache.hadoop.fs.Path(to, f.getFileName().toString()));
        }
      }
      return;
    }
    try (var in = Files.newInputStream(from); var out = fs.create(to, true)) {
      in.transferTo(out);
    }
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
    for (FileStatus st : listing()) {
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
