package io.lorafleet.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.lorafleet.worker.safetensors.SafetensorsReader;
import io.lorafleet.worker.safetensors.TensorInfo;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.IntStream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Faults with real processes: executor JVMs SIGKILLed at random steps on a standalone cluster, the
 * driver SIGKILLed while it writes a checkpoint, and the output filesystem (a small tmpfs) filling
 * up at a checkpoint. Faults are triggered at a step, through spark.lorafleet.faults, never by a
 * timer, so every trial does the same on any machine. The trial count and seed are properties:
 *
 * <pre>
 * mvn -B verify -pl deploy -am -Dtest=NONE -Dsurefire.failIfNoSpecifiedTests=false \
 *     -Dit.test=FaultInjectionIT -Dlorafleet.fault.trials=20 -Dlorafleet.fault.seed=1
 * </pre>
 */
class FaultInjectionIT {
  static final int STEPS = 12;
  static final int EVERY = 3;
  @TempDir static Path dir;
  static Fixtures.Cluster cluster;
  static Path state;
  static Map<String, String> env;
  static Map<String, float[]> uninterrupted;

  @BeforeAll
  static void startCluster() throws Exception {
    cluster = Fixtures.Cluster.start(dir, 1, "1g");
    state = cluster.state;
    env = cluster.env;
    Fixtures.modelAndData(dir, env);
    Shell.ok(onCluster("baseline"), env, dir.resolve("baseline.log"), 300);
    uninterrupted = Fixtures.adapter(dir.resolve("baseline"));
  }

  @AfterAll
  static void stopCluster() throws Exception {
    cluster.stop();
  }

  static List<String> train(Path out, String... extra) {
    return Fixtures.trainArgs(dir.resolve("model").toString(), dir.resolve("data").toString(), out.toString(), extra);
  }

  static List<String> onCluster(String out, String... extra) {
    List<String> cmd = new ArrayList<>(List.of(Shell.ROOT.resolve("deploy/standalone/submit.sh").toString(), "--state", state.toString(), "--"));
    cmd.addAll(train(dir.resolve(out), extra));
    return cmd;
  }

  static void assertSameAdapter(Map<String, float[]> expected, Path run, String what) {
    Map<String, float[]> got = Fixtures.adapter(run);
    assertEquals(expected.keySet(), got.keySet(), what);
    double worst = 0;
    for (var e : expected.entrySet()) {
      float[] g = got.get(e.getKey());
      for (int i = 0; i < g.length; i++) {
        worst = Math.max(worst, Math.abs(g[i] - e.getValue()[i]));
      }
    }
    assertTrue(worst <= 1e-6, what + ": the final adapter differs from the uninterrupted run's by " + worst);
  }

  static List<Integer> metricSteps(Path run) throws Exception {
    List<Integer> steps = new ArrayList<>();
    for (String line : Files.readAllLines(run.resolve("metrics.jsonl"))) {
      steps.add(new ObjectMapper().readTree(line).get("step").asInt());
    }
    return steps;
  }

  @Test
  void executorsKilledAtRandomStepsAllRecoverToTheUninterruptedAdapter() throws Exception {
    int trials = Integer.getInteger("lorafleet.fault.trials", 3);
    Random rnd = new Random(Long.getLong("lorafleet.fault.seed", 1));
    List<String> report = new ArrayList<>();
    for (int t = 0; t < trials; t++) {
      int step = rnd.nextInt(STEPS);
      int rank = rnd.nextInt(2);
      String name = "kill-" + t;
      // the worker of that rank sends SIGKILL to its own executor JVM before computing that step
      Shell.Result r = Shell.ok(onCluster(name, "--spark-conf", "spark.lorafleet.faults=kill@" + step + ":rank=" + rank), env,
          dir.resolve(name + ".log"), 420);
      Path run = dir.resolve(name);
      var summary = new ObjectMapper().readTree(run.resolve("run_summary.json").toFile());
      assertEquals(2, summary.get("attempts").asInt(), "trial " + t + " (step " + step + ", rank " + rank + "): one relaunch; output:\n" + r.output());
      assertTrue(r.output().contains("relaunching from the last checkpoint (step " + (step / EVERY) * EVERY + ")"), r.output());
      assertEquals(IntStream.rangeClosed(1, STEPS).boxed().toList(), metricSteps(run), "one metrics line per step");
      assertSameAdapter(uninterrupted, run, "trial " + t + " (kill at step " + step + ", rank " + rank + ")");
      report.add("trial " + t + ": executor of rank " + rank + " SIGKILLed at step " + step + ", recovered, adapter equal");
    }
    System.out.println("FaultInjectionIT executor kills:\n  " + String.join("\n  ", report));
  }

  @Test
  void aDriverKilledWhileWritingACheckpointResumesToTheUninterruptedAdapter() throws Exception {
    Path run = dir.resolve("driver-kill");
    Shell.Result killed = Shell.run(onCluster("driver-kill", "--spark-conf", "spark.lorafleet.faults=kill-driver-in-checkpoint@6"), env,
        dir.resolve("driver-kill.log"), 300);
    assertEquals(137, killed.code(), "the driver died of SIGKILL; output:\n" + killed.output());
    assertTrue(Files.isRegularFile(run.resolve(".tmp-checkpoint-6/adapter_model.safetensors")), "killed halfway through checkpoint-6");
    assertFalse(Files.exists(run.resolve("checkpoint-6")));
    assertTrue(Files.isRegularFile(run.resolve(".lorafleet.lock")), "the dead driver's lock is left behind");
    // without --resume the output is refused; with it the stale lock is broken and the run continues from checkpoint-3
    Shell.Result refused = Shell.run(onCluster("driver-kill"), env, dir.resolve("driver-kill-again.log"), 300);
    assertNotEquals(0, refused.code());
    assertTrue(refused.output().contains("stale lock"), refused.output());
    Shell.Result resumed = Shell.ok(onCluster("driver-kill", "--resume"), env, dir.resolve("driver-kill-resume.log"), 300);
    assertTrue(resumed.output().contains("breaking the stale lock"), resumed.output());
    assertTrue(resumed.output().contains("resuming from") && resumed.output().contains("checkpoint-3"), resumed.output());
    assertSameAdapter(uninterrupted, run, "resumed after a driver SIGKILL");
    assertEquals(IntStream.rangeClosed(1, STEPS).boxed().toList(), metricSteps(run), "one metrics line per step");
    try (var files = Files.list(run)) {
      assertTrue(files.noneMatch(f -> f.getFileName().toString().startsWith(".tmp-") || f.getFileName().toString().equals(".lorafleet.lock")),
          "no temporaries or lock left");
    }
  }

  @Test
  void aFullOutputFilesystemFailsTheRunNamingThePath() throws Exception {
    Path mnt = Files.createDirectories(dir.resolve("small-fs"));
    Shell.Result mount = Shell.run(List.of("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt.toString()), Map.of(), dir.resolve("mount.log"), 30);
    Assumptions.assumeTrue(mount.code() == 0, "mounting a tmpfs needs root: " + mount.output());
    try {
      Path run = mnt.resolve("run");
      List<String> cmd = new ArrayList<>(List.of(Fixtures.launcher(), "submit", "--"));
      cmd.addAll(train(run, "--spark-conf", "spark.lorafleet.faults=fill-disk-in-checkpoint@6"));
      Shell.Result r = Shell.run(cmd, env, dir.resolve("full.log"), 300);
      assertNotEquals(0, r.code(), "a run that lost its checkpoints never reports success; output:\n" + r.output());
      assertTrue(r.output().contains(run.toString()) && r.output().contains("No space left on device"), r.output());
      assertFalse(r.output().contains("adapter written to"), r.output());
      assertFalse(Files.exists(run.resolve("run_summary.json")));
      var st = new ObjectMapper().readTree(run.resolve("checkpoint-3/trainer_state.json").toFile());
      assertEquals(3, st.get("step").asInt(), "the checkpoint before the disk filled is intact");
    } finally {
      Shell.run(List.of("umount", "-l", mnt.toString()), Map.of(), dir.resolve("umount.log"), 30);
    }
  }
}
