package io.lorafleet.driver.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.lorafleet.datasets.prepare.Prepare;
import io.lorafleet.datasets.prepare.PrepareOptions;
import io.lorafleet.worker.lora.DoraMethod;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.TinyModelSpec;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A multi-run job trains several adapters on one base over one set of workers, and each run is what
 * it would be alone. LoRA runs share each slot's forward and backward (their rows in one mixed
 * batch), so after 10 and 12 steps their adapters equal their plain trains' to 1e-6 of the
 * adapter's norm, and their losses to 1e-5, for LoRA with dropout and another rank, learning rate,
 * seed, global batch and dataset (two tenants); DoRA runs in passes of its own and equals its plain train byte for
 * byte. The job itself gives the same bytes on 1 and 2 workers. A run that diverges stops alone; a
 * resumed job continues every run from its own checkpoint; successive halving stops the runs with
 * the worst validation loss at a rung.
 */
class MultiRunIT {
  static SparkSession spark;
  @TempDir static Path dir;
  static Path model;
  static Path tenantA;
  static Path tenantB;

  @BeforeAll
  static void setUp() throws Exception {
    spark = SparkSession.builder().master("local[2]").appName("multi-run-it").config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1").getOrCreate();
    model = dir.resolve("model");
    List<String> words = List.of("a", "b", "c", "d", "e", "f", "g", "h", "=");
    ModelDirectory.initModel(model, new TinyModelSpec("llama", 2, 32, 4, 2, 48, 1, 64, false), words, 5);
    tenantA = prepare("a", words, 1);
    tenantB = prepare("b", words, 3);
  }

  /** A tenant's dataset: its own rows (the target words depend on {@code mul}). */
  static Path prepare(String name, List<String> words, int mul) throws Exception {
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < 30; i++) {
      sb.append("{\"context\": \"").append("a b c d e f g".substring(0, 2 * (i % 5) + 1)).append(" =\", \"target\": \"").append(words.get(i * mul % 8))
          .append(' ').append(words.get(i * 3 % 8)).append("\"}\n");
    }
    Files.writeString(dir.resolve(name + ".jsonl"), sb);
    Path out = dir.resolve("data-" + name);
    Prepare.run(spark, PrepareOptions.builder(List.of(dir.resolve(name + ".jsonl").toString()), model.toString(), out.toString()).maxSeqLen(32)
        .truncation("drop").seed(3).valFraction(0.3).shards(2).maxBadFraction(0).build());
    return out;
  }

  @AfterAll
  static void tearDown() {
    spark.stop();
  }

  /** 2 workers, 4 slots a step, validation every 2 steps over 5 rows, a checkpoint every 2 steps. */
  static TrainConfig.Builder base(Path data, String out, int steps) {
    return TrainConfig.builder(model.toString(), data.toString(), dir.resolve(out).toString())
        .tuner(LoraConfig.ofTargetModules(4, 8, "q_proj,v_proj,down_proj").withDropout(0.1)).workers(2).steps(steps).globalBatch(8)
        .microBatch(2).lr(0.02).schedule("constant").clip(1.0).checkpointEvery(2).keepCheckpoints(3).seed(11).timeoutMs(60_000).maxAttempts(1)
        .evalEvery(2).evalExamples(5);
  }

  /**
   * The job's runs: LoRA on tenant A; rank 8 at another learning rate and seed on tenant B, for
   * longer and at twice the global batch; DoRA on tenant A.
   */
  static List<Trainer.Named> runs(String job, int stepsA, int stepsB, boolean resume) {
    List<Trainer.Named> runs = new ArrayList<>();
    runs.add(new Trainer.Named("lora-a", base(tenantA, job + "/runs/lora-a", stepsA).resume(resume).build()));
    // twice the global batch, in micro-batches twice as large: the same 4 slots a step
    runs.add(new Trainer.Named("r8-b", base(tenantB, job + "/runs/r8-b", stepsB).tuner(LoraConfig.ofTargetModules(8, 16, "q_proj,v_proj")
        .withDropout(0.05)).lr(0.01).seed(5).globalBatch(16).microBatch(4).resume(resume).build()));
    runs.add(new Trainer.Named("dora-a", base(tenantA, job + "/runs/dora-a", stepsA).tuner(LoraConfig.ofTargetModules(4, 8, "q_proj,v_proj")
        .withInit("false").withMethod(DoraMethod.INSTANCE)).resume(resume).build()));
    return runs;
  }

  static List<byte[]> bytes(Path run, int lastStep) throws Exception {
    return WorkerCountIT.bytes(run, lastStep);
  }

  static List<String> losses(Path run) throws Exception {
    return WorkerCountIT.losses(run);
  }

  /** The run in the job against its plain train: the adapter to 1e-6 of its norm, each step's loss and validation loss to 1e-5. */
  static void assertCloseRun(Path solo, Path inJob, String what) throws Exception {
    io.lorafleet.driver.AdapterValues.assertClose(solo.resolve("adapter"), inJob.resolve("adapter"), 1e-6, what);
    List<String> a = losses(solo);
    List<String> b = losses(inJob);
    assertEquals(a.size(), b.size());
    for (int i = 0; i < a.size(); i++) {
      String[] x = a.get(i).split(" ");
      String[] y = b.get(i).split(" ");
      assertEquals(x.length, y.length, what + ": " + a.get(i) + " against " + b.get(i));
      for (int k = 1; k < x.length; k++) {
        assertEquals(Double.parseDouble(x[k]), Double.parseDouble(y[k]), 1e-5 * Math.abs(Double.parseDouble(x[k])), what + ": " + a.get(i) + " against " + b.get(i));
      }
    }
  }

  static void assertSameRun(Path solo, Path inJob, int steps, String what) throws Exception {
    List<byte[]> want = bytes(solo, steps);
    List<byte[]> got = bytes(inJob, steps);
    String[] names = {"adapter/", "the last checkpoint's adapter", "the last checkpoint's optimizer state"};
    for (int i = 0; i < want.size(); i++) {
      assertArrayEquals(want.get(i), got.get(i), what + ": " + names[i]);
    }
    assertEquals(losses(solo), losses(inJob), what + ": the same losses and validation losses");
  }

  @Test
  void everyRunOfAJobEqualsItsSoloTrainAndADivergingRunStopsAlone() throws Exception {
    List<Trainer.Named> runs = new ArrayList<>(runs("job", 10, 12, false));
    // the fourth run's step 2 gives a non-finite gradient on rank 0, in every attempt: it diverges
    runs.add(new Trainer.Named("blowup", base(tenantB, "job/runs/blowup", 4).build()));
    spark.sparkContext().setLocalProperty(io.lorafleet.driver.executor.FaultPlan.CONF, "diverge@1:run=3:attempt=*");
    List<Trainer.Result> results;
    try {
      results = Trainer.run(spark, runs, Pruning.Settings.NONE, false);
    } finally {
      spark.sparkContext().setLocalProperty(io.lorafleet.driver.executor.FaultPlan.CONF, null);
    }
    assertEquals(List.of("finished", "finished", "finished", "diverged"), results.stream().map(Trainer.Result::status).toList());
    assertTrue(results.get(3).why().contains("non-finite"), results.get(3).why());
    var summary = new ObjectMapper().readTree(dir.resolve("job/runs/blowup/run_summary.json").toFile());
    assertEquals("diverged", summary.get("status").asText());
    assertFalse(Files.exists(dir.resolve("job/runs/blowup/adapter")), "a diverged run writes no adapter");
    assertEquals(1, losses(dir.resolve("job/runs/blowup")).size(), "it ran one step");
    assertEquals(12, losses(dir.resolve("job/runs/r8-b")).size(), "the longer run went on after the others finished");
    for (Trainer.Named r : runs.subList(0, 3)) {
      TrainConfig solo = r.cfg().toBuilder().output(dir.resolve("solo-" + r.name()).toString()).build();
      Trainer.run(spark, solo, false);
      if (r.name().startsWith("dora")) { // a pass of its own: the same bytes
        assertSameRun(dir.resolve("solo-" + r.name()), dir.resolve("job/runs/" + r.name()), r.cfg().batching().steps(), r.name());
      } else {
        assertCloseRun(dir.resolve("solo-" + r.name()), dir.resolve("job/runs/" + r.name()), r.name());
      }
    }
    // the runs differ from each other
    assertFalse(java.util.Arrays.equals(bytes(dir.resolve("job/runs/lora-a"), 10).get(0), bytes(dir.resolve("job/runs/dora-a"), 10).get(0)));
    // the job on one worker: the same bytes, every run
    List<Trainer.Named> one = new ArrayList<>();
    for (Trainer.Named r : runs("one-worker", 10, 12, false)) {
      one.add(new Trainer.Named(r.name(), r.cfg().toBuilder().workers(1).build()));
    }
    Trainer.run(spark, one, Pruning.Settings.NONE, false);
    List<Trainer.Named> two = runs("two-workers", 10, 12, false);
    Trainer.run(spark, two, Pruning.Settings.NONE, false);
    for (Trainer.Named r : two) {
      int steps = r.cfg().batching().steps();
      assertSameRun(dir.resolve("one-worker/runs/" + r.name()), dir.resolve("two-workers/runs/" + r.name()), steps, r.name() + " on 1 and 2 workers");
    }
  }

  /** --mixed-runs 1: each run's micro-batches take a pass of their own, and each run is its plain train to the byte. */
  @Test
  void withOneRunAPassEveryRunIsItsPlainTrainByteForByte() throws Exception {
    List<Trainer.Named> runs = new ArrayList<>();
    for (Trainer.Named r : runs("separate", 4, 6, false)) {
      runs.add(new Trainer.Named(r.name(), r.cfg().toBuilder().mixedRuns(1).build()));
    }
    Trainer.run(spark, runs, Pruning.Settings.NONE, false);
    for (Trainer.Named r : runs) {
      Trainer.run(spark, r.cfg().toBuilder().mixedRuns(0).output(dir.resolve("separate-solo-" + r.name()).toString()).build(), false);
      assertSameRun(dir.resolve("separate-solo-" + r.name()), dir.resolve("separate/runs/" + r.name()), r.cfg().batching().steps(), r.name());
    }
  }

  @Test
  void aResumedJobContinuesEveryRunFromItsOwnCheckpoint() throws Exception {
    Trainer.run(spark, runs("whole", 4, 6, false), Pruning.Settings.NONE, false);
    Trainer.run(spark, runs("resumed", 2, 2, false), Pruning.Settings.NONE, false); // checkpoint-2 of every run
    Trainer.run(spark, runs("resumed", 4, 6, true), Pruning.Settings.NONE, false);
    for (String r : List.of("lora-a", "r8-b", "dora-a")) {
      int steps = r.equals("r8-b") ? 6 : 4;
      assertSameRun(dir.resolve("whole/runs/" + r), dir.resolve("resumed/runs/" + r), steps, r + " resumed from checkpoint-2");
    }
  }

  @Test
  void successiveHalvingStopsTheRunsWithTheWorstValidationLossAtARung() throws Exception {
    List<Trainer.Named> runs = List.of(
        new Trainer.Named("lr-small", base(tenantA, "halving/runs/lr-small", 6).lr(1e-4).build()),
        new Trainer.Named("lr-mid", base(tenantA, "halving/runs/lr-mid", 6).lr(0.02).build()),
        new Trainer.Named("lr-big", base(tenantA, "halving/runs/lr-big", 6).lr(0.05).build()));
    List<Trainer.Result> results = Trainer.run(spark, runs, new Pruning.Settings(List.of(2), 0.5), false);
    List<Double> atRung = new ArrayList<>();
    for (Trainer.Named r : runs) {
      atRung.add(Double.parseDouble(losses(dir.resolve("halving/runs/" + r.name())).get(1).split(" ")[2]));
    }
    int worst = atRung.indexOf(atRung.stream().max(Double::compare).orElseThrow());
    for (int i = 0; i < 3; i++) {
      Path out = dir.resolve("halving/runs/" + runs.get(i).name());
      if (i == worst) {
        assertEquals("pruned", results.get(i).status(), "the worst validation loss at step 2 of " + atRung);
        assertTrue(results.get(i).why().contains("rung 2"), results.get(i).why());
        assertEquals(2, losses(out).size(), "it stopped at the rung");
        assertTrue(Files.isDirectory(out.resolve("checkpoint-2")), "it keeps its checkpoint");
        assertEquals("pruned", new ObjectMapper().readTree(out.resolve("run_summary.json").toFile()).get("status").asText());
      } else {
        assertEquals("finished", results.get(i).status());
        assertEquals(6, losses(out).size());
      }
    }
  }

  @Test
  void runsThatDifferInWhatTheJobSharesAreRefusedByName() {
    List<Trainer.Named> runs = List.of(new Trainer.Named("x", base(tenantA, "refused/runs/x", 2).build()),
        new Trainer.Named("y", base(tenantA, "refused/runs/y", 2).globalBatch(4).build()));
    var e = assertThrows(IllegalArgumentException.class, () -> Trainer.run(spark, runs, Pruning.Settings.NONE, false));
    assertEquals("run y has 2 micro-batch slots a step (global batch 4 / micro-batch 2) but run x has 4 (8 / 2); the runs of a job may differ in "
        + "global batch only with the micro-batch in proportion, since the workers share out a step's slots", e.getMessage());
    var model = List.of(new Trainer.Named("x", base(tenantA, "refused/runs/x", 2).build()),
        new Trainer.Named("y", base(tenantA, "refused/runs/y", 2).modelDropout(false).build()));
    e = assertThrows(IllegalArgumentException.class, () -> Trainer.run(spark, model, Pruning.Settings.NONE, false));
    assertEquals("run y sets model-dropout false but run x has true; every run of a job shares " + String.join(", ", MultiRun.sharedFields()),
        e.getMessage());
    var noEval = List.of(new Trainer.Named("x", base(tenantA, "refused/runs/x", 4).evalEvery(0).build()),
        new Trainer.Named("y", base(tenantA, "refused/runs/y", 4).build()));
    var p = assertThrows(IllegalArgumentException.class, () -> Trainer.run(spark, noEval, new Pruning.Settings(List.of(2), 0.5), false));
    assertTrue(p.getMessage().startsWith("run x: --prune-at 2 ranks runs by their validation loss at step 2 but its --eval-every 0"), p.getMessage());
    assertFalse(Files.exists(dir.resolve("refused")), "nothing written");
  }
}
