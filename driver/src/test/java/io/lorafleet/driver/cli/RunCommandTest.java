package io.lorafleet.driver.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** lorafleet run job.yaml: prepare, train and eval sections in order, on local Spark, with section.key=value overrides. */
class RunCommandTest {
  @TempDir Path tmp;

  /** The spark: map and the prepare: section of the tests' job files (the directory, the validation fraction). */
  static final String SPARK_AND_PREPARE = """
      spark:
        spark.ui.enabled: false
      prepare:
        input: [%1$s/d.jsonl]
        model: %1$s/model
        out: %1$s/data
        max_seq_len: 16
        val_fraction: %2$s
        shards: 2
      """;

  @Test
  void sectionsRunInOrderWithTheSharedSparkMapAndOverrides() throws Exception {
    io.lorafleet.driver.TinyJob.write(tmp, 1, 20);
    Path model = tmp.resolve("model");
    Path job = tmp.resolve("job.yaml");
    Files.writeString(job, SPARK_AND_PREPARE.formatted(tmp, 0.2) + """
        train:
          model: %1$s/model
          data: %1$s/data
          out: %1$s/run
          workers: 1
          max_steps: 50
          per_device_train_batch_size: 2
          gradient_accumulation_steps: 2
          learning_rate: 0.01
          lr_scheduler_type: constant
          checkpoint_every: 1
        eval:
          model: %1$s/model
          run: %1$s/run
          data: %1$s/data
          out: %1$s/eval
        """.formatted(tmp));
    java.io.PrintStream stdout = System.out;
    java.io.ByteArrayOutputStream said = new java.io.ByteArrayOutputStream();
    System.setOut(new java.io.PrintStream(said, true));
    try {
      assertEquals(0, Main.execute("run", job.toString(), "train.max_steps=2", "train.save_total_limit=1"));
    } finally {
      System.setOut(stdout);
    }
    // no terminal here: progress is whole lines (no carriage returns), from prepare, train and eval
    String log = said.toString();
    assertTrue(!log.contains("\r") && log.contains("prepare: read and tokenized 20 records") && log.contains("prepare: wrote train:")
        && log.contains("step 1/2") && log.contains("step 2/2") && log.contains("eval: 3 candidates in one pass"), log);
    assertTrue(Files.isRegularFile(tmp.resolve("data/manifest.json")));
    assertTrue(Files.isDirectory(tmp.resolve("run/adapter")));
    assertTrue(Files.isDirectory(tmp.resolve("run/checkpoint-2")) && !Files.exists(tmp.resolve("run/checkpoint-1")),
        "the overrides made 2 steps and kept 1 checkpoint");
    String cfg = Files.readString(tmp.resolve("run/train_config.yaml"));
    assertTrue(cfg.contains("globalBatch: 4") && cfg.matches("(?s).*spark.ui.enabled: \"?false.*"), cfg);
    assertTrue(Files.isRegularFile(tmp.resolve("eval/eval.json")));
    Files.writeString(job, "trian:\n  model: m\n");
    assertEquals(2, Main.execute("run", job.toString()), "an unknown section is refused");
    assertEquals(2, Main.execute("run", job.toString(), "lr=1"), "a run override names its section");
  }

  /** A run file's top-level runs: section makes its train section a multi-run job. */
  @Test
  void aRunsSectionTrainsEveryRunInTheTrainSection() throws Exception {
    io.lorafleet.driver.TinyJob.write(tmp, 1, 20);
    Path job = tmp.resolve("multi.yaml");
    Files.writeString(job, SPARK_AND_PREPARE.formatted(tmp, 0) + """
        train:
          model: %1$s/model
          data: %1$s/data
          out: %1$s/runs-job
          workers: 1
          steps: 2
          global_batch: 2
          micro_batch: 1
        runs:
          - {name: slow, lr: 0.001}
          - {name: fast, lr: 0.01, r: 4}
        """.formatted(tmp));
    assertEquals(0, Main.execute("run", job.toString()));
    assertTrue(Files.isDirectory(tmp.resolve("runs-job/runs/slow/adapter")) && Files.isDirectory(tmp.resolve("runs-job/runs/fast/adapter")));
    assertEquals(2, new com.fasterxml.jackson.databind.ObjectMapper().readTree(tmp.resolve("runs-job/runs.json").toFile()).size());
    Files.writeString(job, "runs:\n  - {name: a}\n");
    assertEquals(2, Main.execute("run", job.toString()), "runs: without a train section is refused");
  }
}
