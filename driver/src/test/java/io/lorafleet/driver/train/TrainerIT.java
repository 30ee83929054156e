package io.lorafleet.driver.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.datasets.arrow.Example;
import io.lorafleet.datasets.prepare.Prepare;
import io.lorafleet.datasets.prepare.PrepareOptions;
import io.lorafleet.datasets.prepare.RecordFormat;
import io.lorafleet.driver.checkpoint.Checkpoints;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.CausalLM;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.TinyModelSpec;
import io.lorafleet.worker.train.StepResult;
import io.lorafleet.worker.train.TrainStep;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Distributed training on real Spark local[3]: N-vs-1 equivalence, exact resume, config validation. */
class TrainerIT {
  static SparkSession spark;
  @TempDir static Path dir;
  static Path model;
  static Path data;

  @BeforeAll
  static void setUp() throws Exception {
    spark = SparkSession.builder().master("local[3]").appName("trainer-it").config("spark.ui.enabled", "false").getOrCreate();
    model = dir.resolve("model");
    List<String> words = List.of("a", "b", "c", "d", "e", "f", "g", "h", "=");
    ModelDirectory.initModel(model, new TinyModelSpec("llama", 2, 32, 4, 2, 48, 1, 64, false), words, 3);
    StringBuilder sb = new StringBuilder();
    // 7 examples of uneven length: global batches wrap around the split
    for (int i = 0; i < 7; i++) {
      sb.append("{\"context\": \"").append("a b c d e f g".substring(0, 2 * (i % 4) + 1)).append(" =\", \"target\": \"").append(words.get(i % 8)).append("\"}\n");
    }
    Files.writeString(dir.resolve("d.jsonl"), sb);
    data = dir.resolve("data");
    Prepare.run(spark, new PrepareOptions(List.of(dir.resolve("d.jsonl").toString()), "auto", RecordFormat.CONTEXT_TARGET, Map.of(), "", model.toString(),
        data.toString(), 32, "drop", false, 1, 0, 3, 0));
  }

  @AfterAll
  static void tearDown() {
    spark.stop();
  }

  static TrainConfig cfg(String out, int workers, int steps, String opt, boolean resume) {
    return new TrainConfig(model.toString(), data.toString(), dir.resolve(out).toString(), "q_proj,v_proj,down_proj", 4, 8, 0, workers, steps, 6, 2,
        0.05, 0, "constant", opt, 0.0, 0, 2, 3, 7, 60_000, 2, resume, "", 0, 0, 0, "svd");
  }

  @Test
  void nWorkersMakeTheSameUpdateAsOne() throws Exception {
    float[][] results = new float[4][];
    for (int n : new int[] {1, 2, 3}) {
      results[n] = Trainer.run(spark, cfg("eq" + n, n, 1, "sgd", false), false).adapter();
    }
    // Reference: one process, the whole global batch, the same SGD update.
    try (CausalLM base = CausalLM.load(model, Device.cpu(), DataType.FLOAT32)) {
      LoraModel lora = LoraModel.create(base, cfg("x", 1, 1, "sgd", false).lora());
      float[] p = lora.initialParams(7);
      float[] b0 = lora.initialParams(7);
      // B starts at zero, so give the step a non-trivial starting point: compare the first update from the true init
      List<Example> all = Prepare.readSplit(data.resolve("train"));
      StepResult r = TrainStep.run(lora, p, GlobalBatch.microBatches(GlobalBatch.slice(all, 0, 6, 1, 0), 6), -1);
      for (int i = 0; i < p.length; i++) {
        p[i] -= 0.05f * (float) (r.gradSum()[i] / r.tokens());
      }
      double changed = 0;
      for (int i = 0; i < p.length; i++) {
        changed = Math.max(changed, Math.abs(p[i] - b0[i]));
      }
      assertTrue(changed > 1e-5, "the step must move the adapter: " + changed);
      for (int n : new int[] {1, 2, 3}) {
        assertArrayEquals(p, results[n], 1e-6f, n + " workers");
      }
    }
  }

  @Test
  void resumedRunReproducesUninterruptedLosses() throws Exception {
    List<Double> full = Trainer.run(spark, cfg("full", 2, 6, "adamw", false), false).losses();
    Trainer.run(spark, cfg("part", 2, 4, "adamw", false), false);
    // The interrupted run stopped at step 4; a corrupt newer checkpoint is skipped with a warning.
    Path bogus = dir.resolve("part/checkpoint-5");
    Files.createDirectories(bogus);
    Files.writeString(bogus.resolve(Checkpoints.STATE), "{\"step\": 5}");
    Trainer.Result resumed = Trainer.run(spark, cfg("part", 2, 6, "adamw", true), false);
    assertEquals(2, resumed.losses().size());
    assertEquals(full.get(4), resumed.losses().get(0), 1e-6);
    assertEquals(full.get(5), resumed.losses().get(1), 1e-6);
    assertTrue(Files.isRegularFile(resumed.finalAdapter().resolve(AdapterFormat.WEIGHTS)));
    assertTrue(full.get(5) < full.get(0), "loss falls: " + full);
    assertTrue(Checkpoints.list(dir.resolve("full")).size() <= 3, "retention keeps the last 3");
  }

  @Test
  void averagedAdapterAndMergedModelEvaluateOnSpark() throws Exception {
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < 40; i++) {
      sb.append("{\"context\": \"a b c =\", \"target\": \"").append("abcdefgh".charAt(i % 8)).append(' ').append("abcdefgh".charAt(i / 8)).append("\"}\n");
    }
    Files.writeString(dir.resolve("v.jsonl"), sb);
    Path vdata = dir.resolve("vdata");
    Prepare.run(spark, new PrepareOptions(List.of(dir.resolve("v.jsonl").toString()), "auto", RecordFormat.CONTEXT_TARGET, Map.of(), "", model.toString(),
        vdata.toString(), 32, "drop", false, 1, 0.25, 2, 0));
    var noVal = assertThrows(IllegalArgumentException.class, () -> Trainer.run(spark, cfg("noval", 1, 1, "sgd", false)
        .withEval(1), false));
    assertTrue(noVal.getMessage().contains("needs validation examples"), noVal.getMessage());
    TrainConfig c = new TrainConfig(model.toString(), vdata.toString(), dir.resolve("avg").toString(), "q_proj,v_proj,down_proj", 4, 8, 0, 2, 6, 6, 2,
        0.05, 0, "constant", "adamw", 0.0, 0, 2, 3, 7, 60_000, 2, false, "", 2, 4, 3, "svd");
    Trainer.Result r = Trainer.run(spark, c, false);
    Path avg = dir.resolve("avg/averaged");
    assertTrue(Files.isRegularFile(avg.resolve(AdapterFormat.WEIGHTS)), "--average-last writes averaged/");
    assertTrue(Files.isRegularFile(dir.resolve("avg/loss.svg")));
    assertTrue(Files.readString(dir.resolve("avg/metrics.jsonl")).contains("\"val_loss\""), "--eval-every 2 records validation loss");
    String split = vdata.resolve("validation").toString();
    var rows = io.lorafleet.driver.eval.RunEvaluation.candidates(spark, model.toString(), io.lorafleet.driver.eval.RunEvaluation.runCandidates(dir.resolve("avg")), split, 2, 100);
    assertEquals(List.of("base", "checkpoint-2", "checkpoint-4", "checkpoint-6", "averaged", "adapter"), rows.stream().map(io.lorafleet.driver.eval.RunEvaluation.Row::label).toList());
    io.lorafleet.driver.eval.RunEvaluation.write(dir.resolve("avg-eval"), rows);
    assertTrue(Files.readString(dir.resolve("avg-eval/eval.json")).contains("\"averaged\""));
    // merged model: the same scores as base + unmerged adapter
    Path merged = dir.resolve("merged");
    try (CausalLM base = CausalLM.load(model, Device.cpu(), DataType.FLOAT32)) {
      AdapterFormat.Loaded a = AdapterFormat.read(r.finalAdapter(), base);
      a.model().merge(a.values());
      io.lorafleet.worker.model.ModelDirectory.export(merged, base, model);
    }
    var unmerged = io.lorafleet.driver.eval.Evaluator.distributed(spark, model.toString(), java.util.Optional.of(r.finalAdapter().toString()), split, 2, 100);
    var mergedScores = io.lorafleet.driver.eval.Evaluator.distributed(spark, merged.toString(), java.util.Optional.empty(), split, 2, 100);
    assertEquals(unmerged.loss(), mergedScores.loss(), 1e-4);
    assertEquals(unmerged.exact(), mergedScores.exact());
    assertEquals(Prepare.readSplit(vdata.resolve("validation")).size(), unmerged.examples());
    assertTrue(unmerged.examples() > 3);
  }

  @Test
  void aKilledWorkerIsRecoveredFromTheLastCheckpoint() throws Exception {
    TrainConfig base = new TrainConfig(model.toString(), data.toString(), dir.resolve("steady").toString(), "q_proj,v_proj,down_proj", 4, 8, 0, 2, 12, 6,
        2, 0.05, 0, "constant", "adamw", 0.0, 0, 3, 10, 7, 30_000, 3, false, "", 0, 0, 0, "svd");
    Trainer.Result steady = Trainer.run(spark, base, false);
    TrainConfig killed = new TrainConfig(model.toString(), data.toString(), dir.resolve("killed").toString(), "q_proj,v_proj,down_proj", 4, 8, 0, 2, 12,
        6, 2, 0.05, 0, "constant", "adamw", 0.0, 0, 3, 10, 7, 30_000, 3, false, "", 0, 0, 0, "svd");
    java.util.Set<Long> tasks = java.util.concurrent.ConcurrentHashMap.newKeySet();
    org.apache.spark.scheduler.SparkListener listener = new org.apache.spark.scheduler.SparkListener() {
      @Override
      public void onTaskStart(org.apache.spark.scheduler.SparkListenerTaskStart e) {
        tasks.add(e.taskInfo().taskId());
      }
    };
    spark.sparkContext().addSparkListener(listener);
    Path metrics = dir.resolve("killed/metrics.jsonl");
    Thread killer = new Thread(() -> {
      try {
        while (!Files.exists(metrics) || Files.readAllLines(metrics).size() < 7) {
          Thread.sleep(20);
        }
        long victim = tasks.stream().max(Long::compare).orElseThrow();
        spark.sparkContext().killTaskAttempt(victim, true, "TrainerIT kills a worker at step 7");
      } catch (Exception e) {
        throw new RuntimeException(e);
      }
    });
    killer.start();
    Trainer.Result r;
    try {
      r = Trainer.run(spark, killed, false);
    } finally {
      killer.join(60_000);
      spark.sparkContext().removeSparkListener(listener);
    }
    assertEquals(2, r.attempts(), "one relaunch after the kill");
    long recorded = Files.readAllLines(metrics).size();
    assertTrue(recorded >= 12 && recorded <= 12 + 3, "at most checkpoint-every (3) steps redone, recorded " + recorded);
    assertEquals(steady.losses().size(), r.losses().size());
    for (int i = 0; i < steady.losses().size(); i++) {
      assertEquals(steady.losses().get(i), r.losses().get(i), 1e-5, "loss at step " + (i + 1));
    }
    assertArrayEquals(steady.adapter(), r.adapter(), 1e-5f);
  }

  @Test
  void theDriverGivesUpAfterMaxAttempts() {
    TrainConfig cfg = new TrainConfig(model.toString(), data.toString(), dir.resolve("doomed").toString(), "q_proj", 4, 8, 0, 2, 50, 6, 2, 0.05, 0,
        "constant", "adamw", 0.0, 0, 3, 10, 7, 30_000, 2, false, "", 0, 0, 0, "svd");
    org.apache.spark.scheduler.SparkListener killEveryTask = new org.apache.spark.scheduler.SparkListener() {
      @Override
      public void onTaskStart(org.apache.spark.scheduler.SparkListenerTaskStart e) {
        long id = e.taskInfo().taskId();
        new Thread(() -> {
          try {
            Thread.sleep(300);
          } catch (InterruptedException ignored) {
            return;
          }
          spark.sparkContext().killTaskAttempt(id, true, "TrainerIT kills every worker");
        }).start();
      }
    };
    spark.sparkContext().addSparkListener(killEveryTask);
    try {
      var e = assertThrows(java.io.IOException.class, () -> Trainer.run(spark, cfg, false));
      assertTrue(e.getMessage().startsWith("training failed after 2 attempts; last error:"), e.getMessage());
    } finally {
      spark.sparkContext().removeSparkListener(killEveryTask);
    }
  }

  @Test
  void aHadoopFilesystemOutputIsPublishedAtomicallyAndResumable() throws Exception {
    String uri = dir.resolve("remote-run").toUri().toString(); // file:///…: staged locally, published through Hadoop's FileSystem API
    assertTrue(uri.startsWith("file:"));
    Trainer.Result first = Trainer.run(spark, remote(uri, 4, false), false);
    Path remote = dir.resolve("remote-run");
    for (String f : List.of("checkpoint-2/adapter_model.safetensors", "checkpoint-4/trainer_state.json", "adapter/adapter_config.json", "metrics.jsonl")) {
      assertTrue(Files.isRegularFile(remote.resolve(f)), f + " published");
    }
    assertTrue(!first.finalAdapter().startsWith(remote), "the run wrote into a local stage");
    try (var files = Files.list(remote)) {
      assertTrue(files.noneMatch(f -> f.getFileName().toString().startsWith(".tmp-")), "no temporary names left");
    }
    Trainer.Result resumed = Trainer.run(spark, remote(uri, 6, true), false);
    assertEquals(2, resumed.losses().size(), "resumed from the published checkpoint-4");
    assertTrue(Files.isRegularFile(remote.resolve("checkpoint-6/trainer_state.json")));
  }

  static TrainConfig remote(String uri, int steps, boolean resume) {
    return new TrainConfig(model.toString(), data.toString(), uri, "q_proj,v_proj", 4, 8, 0, 2, steps, 6, 2, 0.05, 0, "constant", "adamw", 0.0, 0, 2, 5, 7,
        60_000, 2, resume, "", 0, 0, 0, "svd");
  }

  @Test
  void initAdapterContinuesTraining() throws Exception {
    Trainer.Result first = Trainer.run(spark, cfg("cont-a", 2, 2, "sgd", false), false);
    TrainConfig cont = new TrainConfig(model.toString(), data.toString(), dir.resolve("cont-b").toString(), "q_proj,v_proj,down_proj", 4, 8, 0, 2, 1, 6, 2,
        0.05, 0, "constant", "sgd", 0.0, 0, 2, 3, 7, 60_000, 2, false, first.finalAdapter().toString(), 0, 0, 0, "svd");
    Trainer.Result second = Trainer.run(spark, cont, false);
    // continued training starts from the adapter's values with fresh optimizer state and data cursor:
    // its one SGD step is that of the global batch of step 0 applied to the first run's adapter
    try (CausalLM base = CausalLM.load(model, Device.cpu(), DataType.FLOAT32)) {
      LoraModel lora = LoraModel.create(base, cfg("x", 1, 1, "sgd", false).lora());
      float[] p = AdapterFormat.read(first.finalAdapter(), base).values().clone();
      StepResult r = TrainStep.run(lora, p, GlobalBatch.microBatches(GlobalBatch.slice(Prepare.readSplit(data.resolve("train")), 0, 6, 1, 0), 6), -1);
      for (int i = 0; i < p.length; i++) {
        p[i] -= 0.05f * (float) (r.gradSum()[i] / r.tokens());
      }
      assertArrayEquals(p, second.adapter(), 1e-6f);
    }
  }

  @Test
  void packedDataTrains() throws Exception {
    Path packed = dir.resolve("packed-data");
    Prepare.run(spark, new PrepareOptions(List.of(dir.resolve("d.jsonl").toString()), "auto", RecordFormat.CONTEXT_TARGET, Map.of(), "", model.toString(),
        packed.toString(), 32, "drop", false, 1, 0, 2, 0, true));
    List<Example> rows = Prepare.readSplit(packed.resolve("train"));
    assertTrue(rows.get(0).positionIds().isPresent() && rows.size() < 7, "7 examples packed into fewer rows");
    TrainConfig c = new TrainConfig(model.toString(), packed.toString(), dir.resolve("packed-run").toString(), "q_proj,v_proj", 4, 8, 0, 2, 3, 2, 1, 0.05,
        0, "constant", "adamw", 0.0, 0, 3, 2, 7, 60_000, 2, false, "", 0, 0, 0, "svd");
    Trainer.Result r = Trainer.run(spark, c, false);
    assertEquals(3, r.losses().size());
    assertTrue(r.losses().stream().allMatch(l -> Double.isFinite(l) && l > 0));
  }

  @Test
  void badConfigsFailBeforeAnySparkWork() {
    var e = assertThrows(IllegalArgumentException.class, () -> Trainer.run(spark, new TrainConfig(model.toString(), data.toString(),
        dir.resolve("bad").toString(), "c_attn", 4, 8, 0, 1, 1, 6, 2, 0.05, 0, "constant", "sgd", 0, 0, 2, 3, 7, 60_000, 2, false, "", 0, 0, 0, "svd"), false));
    assertTrue(e.getMessage().contains("c_attn") && e.getMessage().contains("q_proj"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> Trainer.run(spark, cfg("bad2", 6, 1, "sgd", false), false));
    assertTrue(e.getMessage().contains("exceeds the 3 task slots"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> cfg("bad3", 4, 1, "sgd", false));
    assertTrue(e.getMessage().contains("multiple of --workers"), e.getMessage());
    // a dataset tokenized for another model is refused
    Path other = dir.resolve("other-model");
    try {
      ModelDirectory.initModel(other, new TinyModelSpec("llama", 2, 32, 4, 2, 48, 1, 64, false), List.of("x", "y", "z"), 3);
    } catch (java.io.IOException io) {
      throw new java.io.UncheckedIOException(io);
    }
    e = assertThrows(IllegalArgumentException.class, () -> Trainer.run(spark, new TrainConfig(other.toString(), data.toString(),
        dir.resolve("bad4").toString(), "q_proj", 4, 8, 0, 1, 1, 6, 2, 0.05, 0, "constant", "sgd", 0, 0, 2, 3, 7, 60_000, 2, false, "", 0, 0, 0, "svd"), false));
    assertTrue(e.getMessage().contains("was tokenized with tokenizer") && e.getMessage().contains("prepare the data again"), e.getMessage());
  }
}
