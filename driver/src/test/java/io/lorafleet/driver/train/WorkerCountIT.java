package io.lorafleet.driver.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.lorafleet.datasets.prepare.Prepare;
import io.lorafleet.datasets.prepare.PrepareOptions;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.TinyModelSpec;
import io.lorafleet.worker.lora.AdaloraMethod;
import io.lorafleet.worker.lora.DoraMethod;
import io.lorafleet.worker.lora.LoraConfig;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.UnaryOperator;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The update does not depend on the number of workers, to the bit: a global batch of 8 rows is 4
 * micro-batch slots, which 1, 2, 3 or 4 workers share (3 workers: 1, 1 and 2 slots), each slot's
 * gradient computed alike wherever it lands and added over one tree of slots. Adapters and
 * optimizer states are compared as files, byte for byte; so are the losses and validation losses
 * in metrics.jsonl. A run resumed at another worker count continues the same bytes.
 */
class WorkerCountIT {
  static SparkSession spark;
  @TempDir static Path dir;
  static Path model;
  static Path data;

  @BeforeAll
  static void setUp() throws Exception {
    spark = SparkSession.builder().master("local[4]").appName("worker-count-it").config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1").getOrCreate();
    model = dir.resolve("model");
    List<String> words = List.of("a", "b", "c", "d", "e", "f", "g", "h", "=");
    ModelDirectory.initModel(model, new TinyModelSpec("llama", 2, 32, 4, 2, 48, 1, 64, false), words, 5);
    StringBuilder sb = new StringBuilder();
    // rows of uneven length, so a slot's padding shows if it ever depended on its neighbours
    for (int i = 0; i < 30; i++) {
      sb.append("{\"context\": \"").append("a b c d e f g".substring(0, 2 * (i % 5) + 1)).append(" =\", \"target\": \"").append(words.get(i % 8))
          .append(' ').append(words.get(i * 3 % 8)).append("\"}\n");
    }
    Files.writeString(dir.resolve("d.jsonl"), sb);
    data = dir.resolve("data");
    Prepare.run(spark, PrepareOptions.builder(List.of(dir.resolve("d.jsonl").toString()), model.toString(), data.toString()).maxSeqLen(32)
        .truncation("drop").seed(3).valFraction(0.3).shards(3).maxBadFraction(0).build());
  }

  @AfterAll
  static void tearDown() {
    spark.stop();
  }

  /** 4 steps of 4 slots with LoRA dropout, validation every 2 steps over 5 rows (3 slots: 2, 2 and 1 rows). */
  static TrainConfig cfg(String out, int workers, int steps, boolean resume) {
    return TrainConfig.builder(model.toString(), data.toString(), dir.resolve(out).toString())
        .tuner(LoraConfig.ofTargetModules(4, 8, "q_proj,v_proj,down_proj").withDropout(0.1)).workers(workers).steps(steps).globalBatch(8)
        .microBatch(2).lr(0.02).schedule("constant").clip(1.0).checkpointEvery(2).keepCheckpoints(3).seed(11).timeoutMs(60_000).maxAttempts(1)
        .resume(resume).evalEvery(2).evalExamples(5).build();
  }

  static TrainConfig tuned(TrainConfig c, UnaryOperator<LoraConfig> tune) {
    return c.toBuilder().tuner(tune.apply(c.tuner())).build();
  }

  /** The files that must agree byte for byte: the final adapter, and the last checkpoint's adapter and optimizer state. */
  static List<byte[]> bytes(String run, int lastStep) throws Exception {
    return bytes(dir.resolve(run), lastStep);
  }

  /** As above, for the run directory {@code r}. */
  static List<byte[]> bytes(Path r, int lastStep) throws Exception {
    String ckpt = io.lorafleet.driver.checkpoint.Checkpoints.dirName(lastStep);
    List<byte[]> out = new ArrayList<>();
    for (Path p : List.of(r.resolve("adapter/adapter_model.safetensors"), r.resolve(ckpt).resolve("adapter_model.safetensors"),
        r.resolve(ckpt).resolve(io.lorafleet.driver.checkpoint.Checkpoints.OPTIMIZER))) {
      out.add(Files.readAllBytes(p));
    }
    return out;
  }

  /** Each step's loss and each evaluation's validation loss, as metrics.jsonl records them. */
  static List<String> losses(String run) throws Exception {
    return losses(dir.resolve(run));
  }

  /** As above, for the run directory {@code run}. */
  static List<String> losses(Path run) throws Exception {
    List<String> out = new ArrayList<>();
    ObjectMapper json = new ObjectMapper();
    for (String line : Files.readAllLines(run.resolve("metrics.jsonl"))) {
      var m = json.readTree(line);
      out.add(m.get("step") + " " + m.get("loss").asText() + (m.has("val_loss") ? " " + m.get("val_loss").asText() : ""));
    }
    return out;
  }

  static void assertSameBytes(List<byte[]> want, List<byte[]> got, String what) {
    String[] names = {"adapter/", "the last checkpoint's adapter", "the last checkpoint's optimizer state"};
    for (int i = 0; i < want.size(); i++) {
      assertArrayEquals(want.get(i), got.get(i), what + ": " + names[i]);
    }
  }

  @Test
  void loraGivesTheSameBytesOnOneToFourWorkersWithOrWithoutPreReduction() throws Exception {
    Trainer.run(spark, cfg("lora1", 1, 4, false), false);
    List<byte[]> one = bytes("lora1", 4);
    List<String> oneLosses = losses("lora1");
    assertEquals(4, oneLosses.size());
    assertTrue(oneLosses.get(1).split(" ").length == 3, "validation at step 2: " + oneLosses);
    String[] preReduce = {"", "executor", "none", "executor", "none"};
    for (int n = 2; n <= 4; n++) {
      String run = "lora" + n;
      Trainer.run(spark, cfg(run, n, 4, false).toBuilder().preReduce(preReduce[n]).build(), false);
      assertSameBytes(one, bytes(run, 4), n + " workers, --pre-reduce " + preReduce[n]);
      assertEquals(oneLosses, losses(run), n + " workers: the same losses and validation losses to the last digit");
    }
    // pushes: 4 workers without pre-reduction push one slot each; 3 workers with it push the root alone (one executor)
    assertEquals(4, new ObjectMapper().readTree(Files.readAllLines(dir.resolve("lora4/metrics.jsonl")).get(0)).get("pushes").asInt());
    assertEquals(1, new ObjectMapper().readTree(Files.readAllLines(dir.resolve("lora3/metrics.jsonl")).get(0)).get("pushes").asInt());
    // the dropout is on: without it the bytes differ, so the equality above is not a run that ignores its rows' keys
    Trainer.run(spark, tuned(cfg("lora1-nodrop", 1, 4, false), t -> t.withDropout(0)), false);
    assertFalse(java.util.Arrays.equals(one.get(0), bytes("lora1-nodrop", 4).get(0)));
  }

  @Test
  void doraAndAdaloraGiveTheSameBytesOnOneAndOnThreeOrFourWorkers() throws Exception {
    UnaryOperator<LoraConfig> dora = t -> t.withInit("false").withMethod(DoraMethod.INSTANCE);
    Trainer.run(spark, tuned(cfg("dora1", 1, 4, false), dora), false);
    Trainer.run(spark, tuned(cfg("dora3", 3, 4, false), dora), false);
    assertSameBytes(bytes("dora1", 4), bytes("dora3", 4), "DoRA on 3 workers");
    // AdaLoRA: the allocator on the driver sees the same sums, so it masks the same ranks
    UnaryOperator<LoraConfig> ada = t -> t.withMethod(AdaloraMethod.of(2, 1, 1, 2, 1, 0.85, 0.85, 0.5, 4));
    Trainer.run(spark, tuned(cfg("ada1", 1, 4, false), ada), false);
    Trainer.run(spark, tuned(cfg("ada4", 4, 4, false), ada), false);
    assertSameBytes(bytes("ada1", 4), bytes("ada4", 4), "AdaLoRA on 4 workers");
    assertEquals(Files.readString(dir.resolve("ada1/adapter/adapter_config.json")), Files.readString(dir.resolve("ada4/adapter/adapter_config.json")),
        "the same rank pattern");
  }

  @Test
  void aRunCheckpointedOnFourWorkersResumesOnTwoOrThreeToTheSameBytes() throws Exception {
    Trainer.run(spark, cfg("whole4", 4, 6, false), false);
    List<byte[]> whole = bytes("whole4", 6);
    for (int n : new int[] {2, 3}) {
      String run = "resumed-at-" + n;
      Trainer.run(spark, cfg(run, 4, 2, false), false); // checkpoint-2, written by 4 workers
      Trainer.run(spark, cfg(run, n, 6, true), false);
      assertSameBytes(whole, bytes(run, 6), "4 workers for steps 1-2, then " + n + " from checkpoint-2");
      assertEquals(losses("whole4"), losses(run));
    }
  }
}
