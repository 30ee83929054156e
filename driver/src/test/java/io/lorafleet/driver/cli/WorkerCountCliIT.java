package io.lorafleet.driver.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

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
 * Through the CLI, as a user runs it (each train its own local[4] session): adapters written by 1,
 * 2, 3 and 4 workers over the 4 slots of a step, and by a run checkpointed on 4 workers and resumed
 * on 3, are the same file, byte for byte.
 */
class WorkerCountCliIT {
  @TempDir static Path dir;

  @BeforeAll
  static void setUp() throws Exception {
    List<String> words = List.of("a", "b", "c", "d", "e", "f", "g", "h", "=");
    ModelDirectory.initModel(dir.resolve("model"), new TinyModelSpec("llama", 2, 32, 4, 2, 48, 1, 64, false), words, 9);
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < 20; i++) {
      sb.append("{\"context\": \"").append("a b c d e".substring(0, 2 * (i % 3) + 1)).append(" =\", \"target\": \"").append(words.get(i * 5 % 8))
          .append("\"}\n");
    }
    Files.writeString(dir.resolve("d.jsonl"), sb);
    SparkSession spark = SparkSession.builder().master("local[2]").appName("worker-count-cli-it").config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1").getOrCreate();
    try {
      Prepare.run(spark, PrepareOptions.builder(List.of(dir.resolve("d.jsonl").toString()), dir.resolve("model").toString(), dir.resolve("data").toString())
          .maxSeqLen(32).truncation("drop").seed(2).shards(2).maxBadFraction(0).build());
    } finally {
      spark.stop();
    }
  }

  static byte[] train(String out, int workers, int steps, String... extra) throws Exception {
    List<String> a = new ArrayList<>(List.of("train", "--model", dir.resolve("model").toString(), "--data", dir.resolve("data").toString(), "--out",
        dir.resolve(out).toString(), "--workers", Integer.toString(workers), "--local-threads", "4", "--steps", Integer.toString(steps),
        "--global-batch", "8", "--micro-batch", "2", "--checkpoint-every", "2", "--schedule", "constant", "--lr", "2e-2", "--lora-dropout", "0.1",
        "--target-modules", "q_proj,v_proj,o_proj", "--seed", "5"));
    a.addAll(List.of(extra));
    var r = LabelsIT.cli(a.toArray(String[]::new));
    assertEquals(0, r.getKey(), r.getValue());
    return Files.readAllBytes(dir.resolve(out).resolve("adapter/adapter_model.safetensors"));
  }

  @Test
  void everyWorkerCountAndAResumeAtAnotherWriteTheSameAdapterFile() throws Exception {
    byte[] one = train("w1", 1, 4);
    for (int n = 2; n <= 4; n++) {
      assertArrayEquals(one, train("w" + n, n, 4), n + " workers");
    }
    train("resumed", 4, 2);
    assertArrayEquals(one, train("resumed", 3, 4, "--resume"), "checkpoint-2 of 4 workers continued on 3");
  }
}
