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

    /** Two workers of {@code cores} cores and {@code memory} each. */
    static Cluster start(Path dir, int cores, String memory) throws Exception {
      return start(dir, 2, cores, memory);
    }

    /** {@code workers} workers of {@code cores} cores and {@code memory} each. */
    static Cluster start(Path dir, int workers, int cores, String memory) throws Exception {
      Cluster c = new Cluster(dir);
      Runtime.getRuntime().addShutdownHook(c.hook);
      c.daemons.addAll(startCluster(c.state, 0, workers, cores, memory, c.env, dir.resolve("start.log")));
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
    return startCluster(state, gpus, 2, cores, memory, env, log);
  }

  /** Starts master + {@code workers} workers of {@code cores} cores and {@code memory} each, and returns the daemons' pids. */
  static List<Long> startCluster(Path state, int gpus, int workers, int cores, String memory, Map<String, String> env, Path log) throws Exception {
    int port;
    try (ServerSocket s = new ServerSocket(0)) {
      port = s.getLocalPort();
    }
    List<String> cmd = new ArrayList<>(List.of(Shell.ROOT.resolve("deploy/standalone/start-cluster.sh").toString(), "--workers", Integer.toString(workers), "--cores", Integer.toString(cores),
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

  /** dir/model (a tiny Llama) and dir/d.jsonl (24 context-target records). */
  static void modelAndRecords(Path dir, Map<String, String> env) throws Exception {
    Files.writeString(dir.resolve("vocab.txt"), "a b c d e f g h =");
    Shell.ok(List.of(launcher(), "init-model", "--arch", "llama", "--layers", "2", "--hidden", "32", "--heads", "4", "--vocab-file",
        dir.resolve("vocab.txt").toString(), "--out", dir.resolve("model").toString()), env, dir.resolve("init.log"), 300);
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < 24; i++) {
      sb.append("{\"context\": \"a b c =\", \"target\": \"").append("abcdefgh".charAt(i % 8)).append(' ').append("abcdefgh".charAt(i / 8)).append("\"}\n");
    }
    Files.writeString(dir.resolve("d.jsonl"), sb);
  }

  /** dir/model (a tiny Llama) and dir/data (24 prepared records in 2 shards). */
  static void modelAndData(Path dir, Map<String, String> env) throws Exception {
    modelAndRecords(dir, env);
    Shell.ok(List.of(launcher(), "prepare", "--model", dir.resolve("model").toString(), "--input", dir.resolve("d.jsonl").toString(), "--out",
        dir.resolve("data").toString(), "--shards", "2"), env, dir.resolve("prepare.log"), 300);
  }

  /** The fault suites' training run through the launcher. */
  static List<String> train(String model, String data, String out, String... extra) {
    List<String> a = new ArrayList<>(List.of(launcher()));
    a.addAll(trainArgs(model, data, out, extra));
    return a;
  }

  /** The fault suites' training command: 12 steps on 2 workers, a checkpoint every 3, then {@code extra}. */
  static List<String> trainArgs(String model, String data, String out, String... extra) {
    List<String> a = new ArrayList<>(List.of("train", "--model", model, "--data", data, "--out", out, "--workers", "2", "--steps", "12",
        "--global-batch", "4", "--micro-batch", "2", "--checkpoint-every", "3", "--target-modules", "q_proj,v_proj", "--timeout-ms", "60000",
        "--schedule", "cosine", "--lr", "1e-2"));
    a.addAll(List.of(extra));
    return a;
  }

  /**
   * After a driver died between checkpoint 3 and 6: the same command is refused for the dead
   * driver's stale lock, and with --resume it breaks the lock and continues from checkpoint-3.
   */
  static void refusedThenResumedFromCheckpoint3(List<String> train, Map<String, String> env, Path logs) throws Exception {
    Shell.Result refused = Shell.run(train, env, logs.resolve("again.log"), 300);
    org.junit.jupiter.api.Assertions.assertNotEquals(0, refused.code());
    assertTrue(refused.output().contains("stale lock"), refused.output());
    List<String> resume = new ArrayList<>(train);
    resume.add("--resume");
    Shell.Result resumed = Shell.ok(resume, env, logs.resolve("resume.log"), 300);
    assertTrue(resumed.output().contains("breaking the stale lock") || resumed.output().contains("resuming from"), resumed.output());
    assertTrue(resumed.output().contains("resuming from") && resumed.output().contains("checkpoint-3"), resumed.output());
  }

  /** Every tensor of dir/adapter/adapter_model.safetensors. */
  static Map<String, float[]> adapter(Path run) {
    io.lorafleet.worker.safetensors.SafetensorsReader r = io.lorafleet.worker.safetensors.SafetensorsReader.open(run.resolve("adapter/adapter_model.safetensors"));
    Map<String, float[]> out = new java.util.TreeMap<>();
    for (io.lorafleet.worker.safetensors.TensorInfo t : r.tensors().values()) {
      out.put(t.name(), r.read(t.name()).toFloatArray());
    }
    return out;
  }

  /** The same tensors, to the bit. */
  static void assertSameTensors(Map<String, float[]> expected, Map<String, float[]> got, String what) {
    org.junit.jupiter.api.Assertions.assertEquals(expected.keySet(), got.keySet(), what);
    for (var e : expected.entrySet()) {
      assertTrue(java.util.Arrays.equals(e.getValue(), got.get(e.getKey())), what + ": " + e.getKey() + " differs from the uninterrupted run's");
    }
  }
}
