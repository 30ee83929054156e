package io.lorafleet.deploy;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.hdfs.MiniDFSCluster;

/**
 * A real HDFS for one test class: Hadoop's MiniDFSCluster (a NameNode and DataNodes on 127.0.0.1, in
 * this JVM), storing under {@code dir}. Commands under test reach it as a user's would, through its
 * hdfs:// URI from their own processes.
 */
final class MiniHdfs implements AutoCloseable {
  final MiniDFSCluster cluster;
  final FileSystem fs;

  private MiniHdfs(MiniDFSCluster cluster) throws IOException {
    this.cluster = cluster;
    this.fs = cluster.getFileSystem();
  }

  /** {@code dataNodes} DataNodes, replication {@code replication}. */
  static MiniHdfs start(Path dir, int dataNodes, int replication) throws IOException {
    Configuration conf = new Configuration();
    conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, Files.createDirectories(dir).toString());
    conf.setInt("dfs.replication", replication);
    conf.set("dfs.namenode.rpc-bind-host", "127.0.0.1");
    conf.set("dfs.namenode.http-bind-host", "127.0.0.1");
    conf.set("dfs.datanode.address", "127.0.0.1:0");
    conf.set("dfs.datanode.http.address", "127.0.0.1:0");
    conf.set("dfs.datanode.ipc.address", "127.0.0.1:0");
    conf.setInt("dfs.namenode.heartbeat.recheck-interval", 2000); // a stopped DataNode is declared dead in seconds, not 10 minutes
    conf.setInt("dfs.heartbeat.interval", 1);
    return new MiniHdfs(new MiniDFSCluster.Builder(conf, dir.toFile()).numDataNodes(dataNodes).build());
  }

  /** hdfs://127.0.0.1:PORT/path. */
  String uri(String path) {
    return "hdfs://127.0.0.1:" + cluster.getNameNodePort() + (path.startsWith("/") ? path : "/" + path);
  }

  /** Copies a local file or directory to {@code path}. */
  void put(Path local, String path) throws IOException {
    fs.copyFromLocalFile(false, true, new org.apache.hadoop.fs.Path(local.toUri()), new org.apache.hadoop.fs.Path(path));
  }

  /** Copies {@code path} (a file or directory) into local directory {@code local}. */
  Path get(String path, Path local) throws IOException {
    Files.createDirectories(local);
    fs.copyToLocalFile(false, new org.apache.hadoop.fs.Path(path), new org.apache.hadoop.fs.Path(local.toUri()), true);
    return local.resolve(new org.apache.hadoop.fs.Path(path).getName());
  }

  byte[] read(String path) throws IOException {
    try (var in = fs.open(new org.apache.hadoop.fs.Path(path))) {
      return in.readAllBytes();
    }
  }

  /**
   * Creates an empty file, whole at once: written under another name and renamed, because a run that polls for the
   * file sees it on HDFS while it is still being created, and may delete it before this client closes it.
   */
  void touch(String path) throws IOException {
    var target = new org.apache.hadoop.fs.Path(path);
    var staged = new org.apache.hadoop.fs.Path(target.getParent(), "." + target.getName() + ".touching");
    fs.create(staged, true).close();
    if (!fs.rename(staged, target)) {
      throw new IOException("could not rename " + staged + " to " + target);
    }
  }

  boolean exists(String path) throws IOException {
    return fs.exists(new org.apache.hadoop.fs.Path(path));
  }

  @Override
  public void close() {
    cluster.shutdown(true);
  }
}
