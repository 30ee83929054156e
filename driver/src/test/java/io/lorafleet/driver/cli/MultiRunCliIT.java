package io.lorafleet.driver.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.lorafleet.datasets.prepare.Prepare;
import io.lorafleet.datasets.prepare.PrepareOptions;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.TinyModelSpec;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A multi-run job through the CLI, as a user writes it: a job file whose runs: (two tenants, each
 * its own data) cross a grid: of learning rates and ranks, trained by one train command into
 * runs/<name>/ with a runs.json table; each run's adapter is what a plain train of the same
 * settings writes, to 1e-6 of its norm (its rows shared each pass with the other runs').
 */
class MultiRunCliIT {
  @TempDir static Path dir;

  @BeforeAll
  static void setUp() throws Exception {
    List<String> words = List.of("a", "b", "c", "d", "e", "f", "g", "h", "=");
    ModelDirectory.initModel(dir.resolve("model"), new TinyModelSpec("llama", 2, 32, 4, 2, 48, 1, 64, false), words, 9);
    SparkSession spark = SparkSession.builder().master("local[2]").appName("multi-run-cli-it").config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1").getOrCreate();
    try {
      for (int t = 1; t <= 2; t++) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 20; i++) {
          sb.append("{\"context\": \"").append("a b c d e".substring(0, 2 * (i % 3) + 1)).append(" =\", \"target\": \"").append(words.get(i * (4 + t) % 8))
              .append("\"}\n");
        }
        Files.writeString(dir.resolve("t" + t + ".jsonl"), sb);
        Prepare.run(spark, PrepareOptions.builder(List.of(dir.resolve("t" + t + ".jsonl").toString()), dir.resolve("model").toString(),
            dir.resolve("data" + t).toString()).maxSeqLen(32).truncation("drop").seed(2).shards(2).maxBadFraction(0).build());
      }
    } finally {
      spark.stop();
    }
  }

  @Test
  void aJobFilesRunsCrossItsGridInOneTrainAndEachRunIsItsPlainTrain() throws Exception {
    Path job = dir.resolve("sweep.yaml");
    Files.writeString(job, String.join("\n",
        "model: " + dir.resolve("model"),
        "data: " + dir.resolve("data1"),
        "out: " + dir.resolve("sweep"),
        "workers: 2",
        "steps: 4",
        "global_batch: 8",
        "micro_batch: 2",
        "checkpoint_every: 2",
        "schedule: constant",
        "lora_dropout: 0.1",
        "target_modules: [q_proj, v_proj]",
        "seed: 5",
        "runs:",
        "  - name: tenant1",
        "  - name: tenant2",
        "    data: " + dir.resolve("data2"),
        "    steps: 2",
        "grid:",
        "  lr: [0.01, 0.03]",
        "  r: [2, 4]",
        ""));
    var r = LabelsIT.cli("train", "--config", job.toString());
    assertEquals(0, r.getKey(), r.getValue());
    var table = new ObjectMapper().readTree(dir.resolve("sweep/runs.json").toFile());
    List<String> names = new ArrayList<>();
    table.forEach(row -> names.add(row.get("name").asText()));
    assertEquals(List.of("tenant1_lr=0.01_r=2", "tenant1_lr=0.01_r=4", "tenant1_lr=0.03_r=2", "tenant1_lr=0.03_r=4", "tenant2_lr=0.01_r=2",
        "tenant2_lr=0.01_r=4", "tenant2_lr=0.03_r=2", "tenant2_lr=0.03_r=4"), names);
    table.forEach(row -> assertEquals("finished", row.get("status").asText(), row.toString()));
    assertEquals(2, table.get(4).get("steps").asInt(), "tenant2's runs set their own steps");
    Path run = dir.resolve("sweep/runs/tenant2_lr=0.03_r=4");
    assertEquals(4, new ObjectMapper().readTree(run.resolve("adapter/adapter_config.json").toFile()).get("r").asInt());
    assertTrue(Files.readString(run.resolve("train_config.yaml")).contains(dir.resolve("data2").toString()), "its own data");
    // the same run alone, through a plain train
    var solo = LabelsIT.cli("train", "--model", dir.resolve("model").toString(), "--data", dir.resolve("data2").toString(), "--out",
        dir.resolve("solo").toString(), "--workers", "2", "--steps", "2", "--global-batch", "8", "--micro-batch", "2", "--checkpoint-every", "2",
        "--schedule", "constant", "--lora-dropout", "0.1", "--target-modules", "q_proj,v_proj", "--seed", "5", "--lr", "0.03", "--r", "4");
    assertEquals(0, solo.getKey(), solo.getValue());
    // its micro-batches shared each slot's pass with the other runs' (a mixed batch): the same adapter to 1e-6 of its norm
    io.lorafleet.driver.AdapterValues.assertClose(dir.resolve("solo/adapter"), run.resolve("adapter"), 1e-6, "the run in the job and its plain train");
    // soups of the sweep: the runs trained on two datasets, so the held-out data must be named
    var unnamed = LabelsIT.cli("soup", "--runs", dir.resolve("sweep").toString(), "--out", dir.resolve("soup").toString());
    assertEquals(2, unnamed.getKey(), unnamed.getValue());
    assertTrue(unnamed.getValue().contains("give --data to name the one the soup is measured on"), unnamed.getValue());
    var soup = LabelsIT.cli("soup", "--runs", dir.resolve("sweep").toString(), "--data", dir.resolve("data1").toString(), "--split", "train",
        "--metric", "loss", "--out", dir.resolve("soup").toString(), "--limit", "12");
    assertEquals(0, soup.getKey(), soup.getValue());
    var s = new ObjectMapper().readTree(dir.resolve("soup/soup.json").toFile());
    assertEquals(8, s.get("runs").size());
    assertEquals(4, s.get("rank").asInt(), "the largest r of the runs");
    double best = Double.MAX_VALUE;
    String bestName = "";
    for (var row : s.get("runs")) {
      if (row.get("loss").asDouble() < best) {
        best = row.get("loss").asDouble();
        bestName = row.get("name").asText();
      }
    }
    var greedy = s.get("greedy_soup");
    assertEquals(bestName, greedy.get("ingredients").get(0).asText(), "the greedy soup starts from the best run");
    assertEquals(7, greedy.get("tried").size(), "it tries every other run once");
    // the best run refactored to rank 4 (>= its r) is itself, and an addition stays only when the loss does not grow
    assertTrue(greedy.get("loss").asDouble() <= best + 1e-4, greedy + " against the best run's " + best);
    for (var t : greedy.get("tried")) {
      assertEquals(t.get("kept").asBoolean(), greedy.get("ingredients").toString().contains("\"" + t.get("name").asText() + "\""), t.toString());
    }
    assertTrue(Files.isRegularFile(dir.resolve("soup/greedy/adapter_model.safetensors")) && Files.isRegularFile(dir.resolve("soup/uniform/adapter_config.json")));
    assertEquals(4, new ObjectMapper().readTree(dir.resolve("soup/greedy/adapter_config.json").toFile()).get("r").asInt());
    assertTrue(Double.isFinite(s.get("uniform_soup").get("loss").asDouble()));
    // a run may not set what the job shares
    Files.writeString(job, Files.readString(job).replace("    steps: 2", "    steps: 2\n    micro_batch: 4").replace("out: " + dir.resolve("sweep"),
        "out: " + dir.resolve("refused")));
    var refused = LabelsIT.cli("train", "--config", job.toString());
    assertEquals(2, refused.getKey(), refused.getValue());
    assertTrue(refused.getValue().contains("run tenant2_lr=0.01_r=2 has 2 micro-batch slots a step (global batch 8 / micro-batch 4) but run "
        + "tenant1_lr=0.01_r=2 has 4 (8 / 2)"), refused.getValue());
    assertFalse(Files.exists(dir.resolve("refused/runs")), "nothing written");
  }
}
