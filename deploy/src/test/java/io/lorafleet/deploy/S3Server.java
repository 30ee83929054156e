package io.lorafleet.deploy;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;

/**
 * A real S3 API server for one test class: s3proxy (Maven Central's jar with its dependencies, copied
 * to target/servers by the build) in its own JVM on 127.0.0.1, storing objects as files under
 * {@code dir} (jclouds' filesystem provider), with one bucket and SigV4 credentials made up for the
 * test. Commands under test reach it through s3a:// with the credentials in their environment.
 */
final class S3Server implements AutoCloseable {
  static final String BUCKET = "lorafleet";
  final int port;
  final String accessKey = "lorafleet-it";
  final String secret = "s3cr3t-" + UUID.randomUUID();
  final Path storage;
  private final Process process;

  private S3Server(Path dir, String jarName) throws Exception {
    storage = Files.createDirectories(dir.resolve("objects"));
    Files.createDirectories(storage.resolve(BUCKET));
    try (ServerSocket s = new ServerSocket(0)) {
      port = s.getLocalPort();
    }
    Path props = dir.resolve("s3proxy.properties");
    Files.writeString(props, String.join("\n", "s3proxy.endpoint=http://127.0.0.1:" + port, "s3proxy.authorization=aws-v2-or-v4",
        "s3proxy.identity=" + accessKey, "s3proxy.credential=" + secret, "jclouds.provider=filesystem",
        "jclouds.filesystem.basedir=" + storage, "") );
    Path jar = Shell.ROOT.resolve("deploy/target/servers/" + jarName);
    if (!Files.isRegularFile(jar)) {
      throw new IllegalStateException(jar + " is missing: the build copies it in pre-integration-test (mvn verify)");
    }
    process = new ProcessBuilder("java", "-jar", jar.toString(), "--properties", props.toString()).redirectErrorStream(true)
        .redirectOutput(dir.resolve("s3proxy.log").toFile()).start();
    for (int i = 0; i < 600; i++) { // bounded: at most a minute for the JVM to listen
      try (Socket s = new Socket()) {
        s.connect(new InetSocketAddress("127.0.0.1", port), 200);
        return;
      } catch (IOException notYet) {
        if (!process.isAlive()) {
          break;
        }
        Thread.sleep(100);
      }
    }
    process.destroyForcibly();
    throw new IllegalStateException("s3proxy did not start; its log:\n" + Shell.read(dir.resolve("s3proxy.log")));
  }

  /** s3proxy 3, which honours If-None-Match: * on a PUT, as S3 does. */
  static S3Server start(Path dir) throws Exception {
    return new S3Server(dir, "s3proxy.jar");
  }

  /** s3proxy 2.6, which accepts If-None-Match: * on a PUT and ignores it, as many S3-compatible stores do. */
  static S3Server ignoringIfNoneMatch(Path dir) throws Exception {
    return new S3Server(dir, "s3proxy-ignores-if-none-match.jar");
  }

  /** s3a://lorafleet/path. */
  String uri(String path) {
    return "s3a://" + BUCKET + (path.startsWith("/") ? path : "/" + path);
  }

  /** The S3A settings that reach this server, as spark.hadoop.* system properties for a command's JVM. */
  String javaOpts() {
    StringBuilder sb = new StringBuilder();
    s3a().forEach((k, v) -> sb.append(" -Dspark.hadoop.").append(k).append('=').append(v));
    return sb.toString().trim();
  }

  /** The environment of a command that reaches this server: credentials the AWS way, endpoint as Spark properties. */
  Map<String, String> env(Path logs) {
    return Map.of("SPARK_LOCAL_IP", "127.0.0.1", "LORAFLEET_LOG_DIR", logs.toString(), "AWS_ACCESS_KEY_ID", accessKey, "AWS_SECRET_ACCESS_KEY",
        secret, "LORAFLEET_JAVA_OPTS", javaOpts());
  }

  private Map<String, String> s3a() {
    return Map.of("fs.s3a.endpoint", "http://127.0.0.1:" + port, "fs.s3a.path.style.access", "true", "fs.s3a.connection.ssl.enabled", "false",
        "fs.s3a.endpoint.region", "us-east-1");
  }

  /** A FileSystem on the bucket for the test itself. */
  FileSystem fs() throws IOException {
    Configuration conf = new Configuration();
    s3a().forEach(conf::set);
    conf.set("fs.s3a.access.key", accessKey);
    conf.set("fs.s3a.secret.key", secret);
    conf.setBoolean("fs.s3a.impl.disable.cache", true);
    return FileSystem.get(java.net.URI.create("s3a://" + BUCKET + "/"), conf);
  }

  @Override
  public void close() throws Exception {
    process.destroy();
    if (!process.waitFor(20, TimeUnit.SECONDS)) {
      process.destroyForcibly();
    }
  }
}
