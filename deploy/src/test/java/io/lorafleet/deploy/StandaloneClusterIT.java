package io.lorafleet.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The spark-submit path on a real Spark standalone cluster: a master and 2 workers, each its own
 * JVM on 127.0.0.1, started by deploy/standalone/start-cluster.sh from Spark's Maven jars; jobs
 * submitted through deploy/bin/lorafleet submit (org.apache.spark.deploy.SparkSubmit with the
 * application jar). The cluster is torn down after the tests, and also if the JVM exits early.
 */
class StandaloneClusterIT {
  @TempDir static Path dir;
  static Fixtures.Cluster cluster;
  static Path state;
  static Map<String, String> env;

  @BeforeAll
  static void startCluster() throws Exception {
    cluster = Fixtures.Cluster.start(dir, 1, "1g");
    state = cluster.state;
    env = cluster.env;
    Fixtures.modelAndData(dir, env);
  }

  @AfterAll
  static void stopCluster() throws Exception {
    cluster.stop();
  }

  List<String> train(String out, int steps, int every) {
    return List.of("train", "--model", dir.resolve("model").toString(), "--data", dir.resolve("data").toString(), "--out", dir.resolve(out).toString(),
        "--workers", "2", "--steps", Integer.toString(steps), "--global-batch", "4", "--micro-batch", "2", "--checkpoint-every", Integer.toString(every),
        "--target-modules", "q_proj,v_proj", "--timeout-ms", "60000");
  }

  static void assertAdapter(Path run) {
    assertTrue(Files.isRegularFile(run.resolve("adapter/adapter_model.safetensors")), run + " has its adapter");
    assertTrue(Files.isRegularFile(run.resolve("adapter/adapter_config.json")));
  }

  @Test
  void submitHasHelpLikeEveryOtherCommand() throws Exception {
    Shell.Result help = Shell.ok(List.of(Fixtures.launcher(), "submit", "--help"), env, dir.resolve("submit-help.log"), 60);
    assertTrue(help.output().contains("Usage: lorafleet submit [SPARK-SUBMIT OPTIONS] -- COMMAND [ARGS]"), help.output());
    Shell.Result bad = Shell.run(List.of(Fixtures.launcher(), "submit", "--master", "local[2]"), env, dir.resolve("submit-bad.log"), 60);
    assertEquals(2, bad.code(), bad.output());
  }

  @Test
  void waitingForExecutorsHasItsOwnTimeout() throws Exception {
    // 3 workers on a cluster of two 1-core workers: the third executor never comes, and the wait ends at --executor-wait-ms
    List<String> cmd = new ArrayList<>(List.of(Shell.ROOT.resolve("deploy/standalone/submit.sh").toString(), "--state", state.toString(), "--"));
    cmd.addAll(train("too-many", 2, 2));
    cmd.set(cmd.indexOf("--workers") + 1, "3");
    cmd.set(cmd.indexOf("--global-batch") + 1, "3");
    cmd.set(cmd.indexOf("--micro-batch") + 1, "1");
    cmd.addAll(List.of("--executor-wait-ms", "3000"));
    Shell.Result r = Shell.run(cmd, env, dir.resolve("too-many.log"), 300);
    assertEquals(2, r.code(), r.output());
    assertTrue(r.output().contains("--workers 3 needs 3 executors but only ") && r.output().contains(" registered within --executor-wait-ms 3000"),
        r.output());
  }

  @Test
  void submitToLocalSpark() throws Exception {
    List<String> cmd = new ArrayList<>(List.of(Fixtures.launcher(), "submit", "--"));
    cmd.addAll(train("local-run", 4, 2));
    Shell.ok(cmd, env, dir.resolve("submit-local.log"), 300);
    assertAdapter(dir.resolve("local-run"));
  }

  @Test
  void submitToTheStandaloneClusterWithAJobFile() throws Exception {
    Path job = dir.resolve("job.yaml");
    Files.writeString(job, String.join("\n",
        "model: " + dir.resolve("model"),
        "data: " + dir.resolve("data"),
        "out: " + dir.resolve("cluster-run"),
        "workers: 2",
        "steps: 6",
        "global-batch: 4",
        "micro-batch: 2",
        "checkpoint-every: 2",
        "target-modules: [q_proj, v_proj]",
        "spark:",
        "  spark.executor.memory: 1g",
        ""));
    Shell.Result r = Shell.ok(List.of(Shell.ROOT.resolve("deploy/standalone/submit.sh").toString(), "--state", state.toString(), "--", "train", "--config",
        job.toString()), env, dir.resolve("submit-cluster.log"), 300);
    Path run = dir.resolve("cluster-run");
    assertAdapter(run);
    for (String c : List.of("checkpoint-2", "checkpoint-4", "checkpoint-6")) {
      assertTrue(Files.isRegularFile(run.resolve(c).resolve("trainer_state.json")), c + " arrived; output:\n" + r.output());
    }
    var summary = new ObjectMapper().readTree(run.resolve("run_summary.json").toFile());
    assertEquals(2, summary.get("workers").asInt());
    // the tasks ran in the executors of both workers, not in the driver
    long executorsThatRan = 0;
    for (int w = 1; w <= 2; w++) {
      try (var files = Files.walk(state.resolve("work-" + w))) {
        executorsThatRan += files.filter(f -> f.getFileName().toString().equals("stderr")).anyMatch(f -> {
          try {
            return Files.readString(f).contains("Finished task");
          } catch (java.io.IOException e) {
            return false;
          }
        }) ? 1 : 0;
      }
    }
    assertEquals(2, executorsThatRan, "both workers' executors ran training tasks");
  }

}
