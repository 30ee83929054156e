package io.lorafleet.deploy;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
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
 * Per-executor pre-reduction on a real standalone cluster: 2 workers of 2 cores, executors of 2
 * cores, 4 training tasks, so each executor runs 2 ranks. With --pre-reduce executor each executor
 * pushes once a step; with none each rank pushes; both give the same adapter to the last bit, and so
 * does a run whose non-leader rank fails and is recovered from a checkpoint.
 */
class PreReductionIT {
  @TempDir static Path dir;
  static Fixtures.Cluster cluster;
  static Path state;
  static Map<String, String> env;

  @BeforeAll
  static void startCluster() throws Exception {
    cluster = Fixtures.Cluster.start(dir, 2, "2g");
    state = cluster.state;
    env = cluster.env;
    Fixtures.modelAndData(dir, env);
  }

  @AfterAll
  static void stopCluster() throws Exception {
    cluster.stop();
  }

  static Shell.Result train(String out, String preReduce, String... extra) throws Exception {
    List<String> cmd = new ArrayList<>(List.of(Shell.ROOT.resolve("deploy/standalone/submit.sh").toString(), "--state", state.toString(),
        "--conf", "spark.executor.cores=2", "--conf", "spark.executor.memory=1g", "--", "train", "--model", dir.resolve("model").toString(),
        "--data", dir.resolve("data").toString(), "--out", dir.resolve(out).toString(), "--workers", "4", "--steps", "6", "--global-batch", "8",
        "--micro-batch", "2", "--checkpoint-every", "2", "--target-modules", "q_proj,v_proj", "--timeout-ms", "60000", "--lr", "1e-2",
        "--pre-reduce", preReduce));
    cmd.addAll(List.of(extra));
    return Shell.ok(cmd, env, dir.resolve(out + ".log"), 300);
  }

  static List<JsonNode> metrics(String run) throws Exception {
    List<JsonNode> out = new ArrayList<>();
    for (String line : Files.readAllLines(dir.resolve(run).resolve("metrics.jsonl"))) {
      out.add(new ObjectMapper().readTree(line));
    }
    return out;
  }

  static byte[] adapter(String run) throws Exception {
    return Files.readAllBytes(dir.resolve(run).resolve("adapter/adapter_model.safetensors"));
  }

  @Test
  void eachExecutorPushesOnceAndTheUpdateIsTheFlatPathsToTheBit() throws Exception {
    Shell.Result flat = train("flat", "none");
    Shell.Result grouped = train("grouped", "executor");
    for (JsonNode m : metrics("flat")) {
      assertEquals(4, m.get("pushes").asInt(), "one push per rank: " + m);
    }
    for (JsonNode m : metrics("grouped")) {
      assertEquals(2, m.get("pushes").asInt(), "one push per executor: " + m + "\n" + grouped.output());
      assertTrue(m.get("bytes").asLong() < metrics("flat").get(0).get("bytes").asLong() * 0.51, "half the bytes: " + m);
    }
    assertArrayEquals(adapter("flat"), adapter("grouped"), "the same adapter, bit for bit\n" + flat.output());
    for (int s = 0; s < 6; s++) {
      assertEquals(metrics("flat").get(s).get("loss").asDouble(), metrics("grouped").get(s).get("loss").asDouble(), 0.0, "loss at step " + (s + 1));
    }
    // rank 1 is not its group's leader: its failure at step 3 ends the stage, which resumes from checkpoint-2 on the same path
    Shell.Result failed = train("recovered", "executor", "--spark-conf", "spark.lorafleet.faults=fail@3:rank=1");
    JsonNode summary = new ObjectMapper().readTree(dir.resolve("recovered/run_summary.json").toFile());
    assertEquals(2, summary.get("attempts").asInt(), failed.output());
    assertArrayEquals(adapter("grouped"), adapter("recovered"), "recovery reproduces the uninterrupted adapter");
  }
}
