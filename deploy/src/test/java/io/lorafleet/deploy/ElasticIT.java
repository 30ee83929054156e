package io.lorafleet.deploy;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A run that shrinks and grows instead of waiting (--min-workers), on a real standalone cluster of
 * three 1-core workers, driven by fault-plan steps, never by timers: the run pauses after step 4,
 * the test SIGKILLs one worker node (daemon and executor), and the run continues on 2 workers from
 * checkpoint 4 at once although --executor-wait-ms is 10 minutes; it pauses again after step 6,
 * the test starts a fourth worker and waits until its executor has registered, and at checkpoint 6
 * the run grows back to 3. Its adapter is byte-identical to an uninterrupted 3-worker run's.
 */
class ElasticIT {
  @TempDir static Path dir;
  static Fixtures.Cluster cluster;
  static Map<String, String> env;

  @BeforeAll
  static void startCluster() throws Exception {
    cluster = Fixtures.Cluster.start(dir, 3, 1, "1g");
    env = cluster.env;
    Fixtures.modelAndData(dir, env);
  }

  @AfterAll
  static void stopCluster() throws Exception {
    cluster.stop();
  }

  /** 12 steps of 3 slots (2 workers take 1 and 2 of them) with LoRA dropout and a checkpoint every 2, then {@code extra}. */
  static List<String> trainArgs(String out, String... extra) {
    List<String> a = new ArrayList<>(List.of("train", "--model", dir.resolve("model").toString(), "--data", dir.resolve("data").toString(), "--out",
        dir.resolve(out).toString(), "--workers", "3", "--steps", "12", "--global-batch", "6", "--micro-batch", "2", "--checkpoint-every", "2",
        "--target-modules", "q_proj,v_proj", "--lora-dropout", "0.1", "--timeout-ms", "60000", "--schedule", "cosine", "--lr", "1e-2"));
    a.addAll(List.of(extra));
    return a;
  }

  static void await(Process p, Path file) throws Exception {
    for (int i = 0; i < 3000 && !Files.exists(file); i++) {
      assertTrue(p.isAlive(), "the run ended before " + file + " appeared");
      Thread.sleep(100);
    }
    assertTrue(Files.exists(file), file + " never appeared");
  }

  /** The process group of the standalone worker named {@code name} in the cluster's pids file. */
  static long workerGroup(String name) throws Exception {
    for (String line : Files.readAllLines(cluster.state.resolve("pids"))) {
      String[] f = line.split(" ");
      if (f[1].equals(name)) {
        return Long.parseLong(f[0]);
      }
    }
    throw new AssertionError("no " + name + " in " + cluster.state.resolve("pids"));
  }

  /** Whether an executor of worker {@code i} has registered with the driver (its log says so). */
  static boolean executorRegistered(int i) throws Exception {
    Path work = cluster.state.resolve("work-" + i);
    if (!Files.isDirectory(work)) {
      return false;
    }
    try (Stream<Path> files = Files.walk(work)) {
      for (Path f : files.filter(x -> x.getFileName().toString().equals("stderr")).toList()) {
        if (Files.readString(f).contains("Successfully registered with driver")) {
          return true;
        }
      }
    }
    return false;
  }

  @Test
  void aLostWorkerShrinksTheRunAtOnceAndItGrowsBackToTheSameBytes() throws Exception {
    // the reference: 3 workers, uninterrupted, in one local JVM (another placement, the same machine kind)
    List<String> local = new ArrayList<>(List.of(Fixtures.launcher()));
    local.addAll(trainArgs("whole", "--local-threads", "3"));
    Shell.ok(local, env, dir.resolve("whole.log"), 300);

    List<String> cmd = new ArrayList<>(List.of(Shell.ROOT.resolve("deploy/standalone/submit.sh").toString(), "--state", cluster.state.toString(), "--"));
    cmd.addAll(trainArgs("elastic", "--min-workers", "1", "--executor-wait-ms", "600000", "--max-attempts", "4", "--spark-conf",
        "spark.lorafleet.faults=pause@3,pause@5:attempt=*"));
    Path log = dir.resolve("elastic.log");
    Path out = dir.resolve("elastic");
    Process p = Shell.start(cmd, env, log);
    try {
      await(p, out.resolve("_paused-3"));
      // a node is lost: its worker daemon and its executor, SIGKILLed together; no other worker has a free core for a replacement
      new ProcessBuilder("kill", "-KILL", "--", "-" + workerGroup("worker-3")).inheritIO().start().waitFor();
      Files.createFile(out.resolve("_resume-3"));
      await(p, out.resolve("_paused-5")); // steps 5 and 6 ran on 2 workers
      Shell.ok(List.of(Shell.ROOT.resolve("deploy/standalone/start-cluster.sh").toString(), "--state", cluster.state.toString(), "--add", "--workers", "1",
          "--cores", "1", "--memory", "1g"), env, dir.resolve("add.log"), 180);
      for (int i = 0; i < 1200 && !executorRegistered(4); i++) { // the node is back once its executor has registered with the driver
        assertTrue(p.isAlive(), "the run ended before the new executor registered");
        Thread.sleep(100);
      }
      assertTrue(executorRegistered(4), "the fourth worker's executor never registered");
      Files.createFile(out.resolve("_resume-5"));
      assertTrue(p.waitFor(300, TimeUnit.SECONDS), "the run did not finish");
      String output = Shell.read(log);
      assertEquals(0, p.exitValue(), output);
      assertTrue(output.contains("continuing on 2 workers (was 3, --min-workers 1) from step 4"), output);
      assertTrue(output.contains("growing from 2 to 3 workers at step 6"), output);
    } finally {
      p.destroyForcibly();
    }
    assertArrayEquals(Files.readAllBytes(dir.resolve("whole/adapter/adapter_model.safetensors")),
        Files.readAllBytes(out.resolve("adapter/adapter_model.safetensors")), "the run that shrank and grew trained what 3 workers train");
    List<JsonNode> steps = new ArrayList<>();
    for (String line : Files.readAllLines(out.resolve("metrics.jsonl"))) {
      steps.add(new ObjectMapper().readTree(line));
    }
    assertEquals(12, steps.size(), "every step once: a resize repeats and skips no row");
    for (JsonNode m : steps) {
      int step = m.get("step").asInt();
      int expected = step <= 4 ? 3 : step <= 6 ? 2 : 3;
      assertEquals(expected, m.get("workers").asInt(), "step " + step + ": " + m);
      assertEquals(step == 5 ? 3 : step == 7 ? 2 : -1, m.path("resized_from").asInt(-1), "step " + step + ": " + m);
    }
    List<String> whole = Files.readAllLines(dir.resolve("whole/metrics.jsonl"));
    for (int i = 0; i < 12; i++) {
      assertEquals(new ObjectMapper().readTree(whole.get(i)).get("loss").asText(), steps.get(i).get("loss").asText(), "step " + (i + 1) + "'s loss");
    }
    assertFalse(Files.exists(out.resolve("_paused-3")) || Files.exists(out.resolve("_paused-5")));
  }
}
