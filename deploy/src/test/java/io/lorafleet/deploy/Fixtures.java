package io.lorafleet.deploy;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/** A standalone cluster and a tiny model with data, made through the project's own scripts. */
final class Fixtures {
  private Fixtures() {}

  /**
   * A standalone cluster (master + 2 workers) for one test class, under dir/cluster, with the env its
   * commands need. A shutdown hook stops it if the JVM exits early; {@link #stop} stops it and checks
   * that none of its processes is left.
   */
  static final class Cluster {
    final Path state;
    final Map<String, String> env;
    private final Path dir;
    private final List<Long> daemons = new ArrayList<>();
    private final Thread hook;

    private Cluster(Path dir) {
      this.dir = dir;
      this.state = dir.resolve("cluster");
      this.env = Map.of("SPARK_LOCAL_IP", "127.0.0.1", "LORAFLEET_LOG_DIR", dir.resolve("logs").toString());
      this.hook = new Thread(() -> stopCluster(state, dir.resolve("stop.log")));
    }

    /** Workers of {@code cores} cores and {@code memory} each. */
    static Cluster start(Path dir, int cores, String memory) throws Exception {
      Cluster c = new Cluster(dir);
      Runtime.getRuntime().addShutdownHook(c.hook);
      c.daemons.addAll(startCluster(c.state, 0, cores, memory, c.env, dir.resolve("start.log")));
      return c;
    }

    void stop() throws Exception {
      stopCluster(state, dir.resolve("stop.log"));
      Runtime.getRuntime().removeShutdownHook(hook);
      assertStopped(daemons, state);
    }
  }

  static String launcher() {
    return Shell.ROOT.resolve("deploy/bin/lorafleet").toString();
  }

  /** Starts master + 2 workers (1 core, 1g each; {@code gpus} GPUs each) and returns the daemons' pids. */
  static List<Long> startCluster(Path state, int gpus, Map<String, String> env, Path log) throws Exception {
    return startCluster(state, gpus, 1, "1g", env, log);
  }

  /** Starts master + 2 workers of {@code cores} cores and {@code memory} each, and returns the daemons' pids. */
  static List<Long> startCluster(Path state, int gpus, int cores, String memory, Map<String, String> env, Path log) throws Exception {
    int port;
    try (ServerSocket s = new ServerSocket(0)) {
      port = s.getLocalPort();
    }
    List<String> cmd = new ArrayList<>(List.of(Shell.ROOT.resolve("deploy/standalone/start-cluster.sh").toString(), "--workers", "2", "--cores", Integer.toString(cores),
        "--memory", memory, "--port", Integer.toString(port), "--state", state.toString()));
    if (gpus > 0) {
      cmd.addAll(List.of("--gpus", Integer.toString(gpus)));
    }
    Shell.ok(cmd, env, log, 180);
    List<Long> pids = new ArrayList<>();
    for (String line : Files.readAllLines(state.resolve("pids"))) {
      pids.add(Long.parseLong(line.split(" ")[0]));
    }
    return pids;
  }

  static void stopCluster(Path state, Path log) {
    try {
      Shell.run(List.of(Shell.ROOT.resolve("deploy/standalone/stop-cluster.sh").toString(), "--state", state.toString()), Map.of(), log, 60);
    } catch (Exception e) {
      System.err.println("stopping the standalone cluster failed: " + e);
    }
  }

  static void assertStopped(List<Long> daemons, Path state) throws Exception {
    for (long pid : daemons) {
      var ph = ProcessHandle.of(pid);
      if (ph.isPresent()) {
        ph.get().onExit().get(20, TimeUnit.SECONDS);
      }
      assertFalse(ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false), "cluster daemon " + pid + " is still running");
    }
    assertTrue(ProcessHandle.allProcesses().noneMatch(p -> p.info().commandLine().orElse("").contains(state.toString())),
        "no process of the cluster is left");
  }

  /** dir/model (a tiny Llama) and dir/data (24 prepared records in 2 shards). */
  static void modelAndData(Path dir, Map<String, String> env) throws Exception {
    Files.writeString(dir.resolve("vocab.txt"), "a b c d e f g h =");
    Shell.ok(List.of(launcher(), "init-model", "--arch", "llama", "--layers", "2", "--hidden", "32", "--heads", "4", "--vocab-file",
        dir.resolve("vocab.txt").toString(), "--out", dir.resolve("model").toString()), env, dir.resolve("init.log"), 300);
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < 24; i++) {
      sb.append("{\"context\": \"a b c =\", \"target\": \"").append("abcdefgh".charAt(i % 8)).append(' ').append("abcdefgh".charAt(i / 8)).append("\"}\n");
    }
    Files.writeString(dir.resolve("d.jsonl"), sb);
    Shell.ok(List.of(launcher(), "prepare", "--model", dir.resolve("model").toString(), "--input", dir.resolve("d.jsonl").toString(), "--out",
        dir.resolve("data").toString(), "--shards", "2"), env, dir.resolve("prepare.log"), 300);
  }
}
