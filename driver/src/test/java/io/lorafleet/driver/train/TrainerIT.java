package io.lorafleet.driver.train;

import io.lorafleet.worker.model.Dropout;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.datasets.arrow.Example;
import io.lorafleet.datasets.prepare.Prepare;
import io.lorafleet.datasets.prepare.PrepareOptions;
import io.lorafleet.datasets.prepare.RecordFormat;
import io.lorafleet.driver.checkpoint.Checkpoints;
import io.lorafleet.driver.executor.EpochOrder;
import io.lorafleet.driver.executor.FaultPlan;
import io.lorafleet.driver.executor.GlobalBatch;
import io.lorafleet.driver.executor.ModelCache;
import io.lorafleet.datasets.fs.NodeCopy;
import io.lorafleet.worker.lora.AdaloraMethod;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.DoraMethod;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.lora.VeraMethod;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.TinyModelSpec;
import io.lorafleet.worker.train.StepResult;
import io.lorafleet.worker.train.TrainStep;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.function.UnaryOperator;
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
    spark = SparkSession.builder().master("local[3]").appName("trainer-it").config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1").getOrCreate(); // the gradient channel then listens on loopback only
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
    Prepare.run(spark, PrepareOptions.builder(List.of(dir.resolve("d.jsonl").toString()), model.toString(), data.toString()).maxSeqLen(32)
        .truncation("drop").seed(1).shards(3).maxBadFraction(0).build());
  }

  @AfterAll
  static void tearDown() {
    spark.stop();
  }

  static TrainConfig cfg(String out, int workers, int steps, String opt, boolean resume) {
    return TrainConfig.builder(model.toString(), data.toString(), dir.resolve(out).toString())
        .tuner(LoraConfig.ofTargetModules(4, 8, "q_proj,v_proj,down_proj")).workers(workers).steps(steps).globalBatch(6).microBatch(2).lr(0.05)
        .schedule("constant").optimizer(opt).clip(0).checkpointEvery(2).keepCheckpoints(3).seed(7).timeoutMs(60_000).maxAttempts(2).resume(resume)
        .evalExamples(0).build();
  }

  /** {@code c} training the adapter that {@code tune} makes of its tuner. */
  static TrainConfig tuned(TrainConfig c, UnaryOperator<LoraConfig> tune) {
    return c.toBuilder().tuner(tune.apply(c.tuner())).build();
  }

  /** Step 0's global batch (6 rows) for seed 7, as one worker reads it: the rows at positions 0..5 of epoch 0's order. */
  static List<Example> firstGlobalBatch() throws Exception {
    var split = io.lorafleet.datasets.arrow.SplitReader.open(data.resolve("train").toString(), new org.apache.hadoop.conf.Configuration(),
        io.lorafleet.datasets.arrow.TokenLimits.NONE, 16);
    return GlobalBatch.slice(split, new EpochOrder(split.blockRows(), 7, TrainConfig.DEFAULT_SHUFFLE_WINDOW), 0, 6);
  }


  @Test
  void preReductionChangesNoBitAndCompressedGradientsStayWithinTheirBound() throws Exception {
    // local[N]: every task runs in one executor, so with pre-reduction the 3 ranks push once, as the tree's root
    Trainer.Result flat = Trainer.run(spark, cfg("flat3", 3, 2, "adamw", false).toBuilder().gradTransport("fp32").preReduce("none").build(), false);
    Trainer.Result grouped = Trainer.run(spark, cfg("grouped3", 3, 2, "adamw", false), false);
    assertEquals(List.of(3, 3), metric(dir.resolve("flat3"), "pushes"));
    assertEquals(List.of(1, 1), metric(dir.resolve("grouped3"), "pushes"));
    assertArrayEquals(flat.adapter(), grouped.adapter(), 0f, "the same additions in the same order");
    assertEquals(flat.losses(), grouped.losses());
    // One SGD step, so the update is -lr times the mean gradient. Each slot's gradient, recomputed here, bounds the
    // error of every node sum pushed: bf16 rounds each value within 2^-8 of itself, block-scaled fp16 within 2^-11 (or 2^-39 of its block's largest).
    float[] init = LoraModel.create(ModelCache.skeleton(model.toString()), cfg("x", 1, 1, "sgd", false).lora()).initialParams(7);
    float[][] perSlot = new float[3][];
    long tokens = 0;
    var split = io.lorafleet.datasets.arrow.SplitReader.open(data.resolve("train").toString(), new org.apache.hadoop.conf.Configuration(),
        io.lorafleet.datasets.arrow.TokenLimits.NONE, 16);
    try (LanguageModel base = LanguageModel.load(model, Device.cpu(), DataType.FLOAT32)) {
      LoraModel lora = LoraModel.create(base, cfg("x", 1, 1, "sgd", false).lora());
      for (int j = 0; j < 3; j++) {
        var rows = GlobalBatch.slice(split, new EpochOrder(split.blockRows(), 7, TrainConfig.DEFAULT_SHUFFLE_WINDOW), 0, 6, 2,
            new io.lorafleet.driver.allreduce.SumTree.Node(j, j + 1));
        StepResult res = TrainStep.run(lora, init.clone(), GlobalBatch.microBatches(rows, 2), Dropout.Plan.NONE);
        perSlot[j] = res.gradSum();
        tokens += res.tokens();
      }
    }
    float[] exact = Trainer.run(spark, cfg("sgd-fp32", 2, 1, "sgd", false), false).adapter();
    for (String t : new String[] {"bf16", "fp16"}) {
      float[] got = Trainer.run(spark, cfg("sgd-" + t, 2, 1, "sgd", false).toBuilder().gradTransport(t).preReduce("none").build(), false).adapter();
      double relative = 0;
      double norm = 0;
      double worst = 0;
      for (int i = 0; i < init.length; i++) {
        double spread = Math.abs(perSlot[0][i]) + Math.abs(perSlot[1][i]) + Math.abs(perSlot[2][i]);
        double bound = 0.05 / tokens * (t.equals("bf16") ? spread * 0x1p-8 : spread * 0x1p-11 + 1e-9) + 4 * Math.ulp(exact[i]);
        worst = Math.max(worst, Math.abs(got[i] - exact[i]) / bound);
        relative += Math.pow(got[i] - exact[i], 2);
        norm += Math.pow(exact[i] - init[i], 2);
      }
      assertTrue(worst <= 1, t + ": an update value is " + worst + " times its bound");
      assertTrue(norm > 0 && Math.sqrt(relative / norm) < (t.equals("bf16") ? 0x1p-8 : 0x1p-11) * 2,
          t + ": the update is off by " + Math.sqrt(relative / norm) + " of its norm");
      System.out.printf("%s transport: update relative error %.3g (max %.3g of the per-value bound)%n", t, Math.sqrt(relative / norm), worst);
    }
  }

  /**
   * QLoRA: over the base quantized to NF4 at load, 2 workers make the 1-worker update; the same base
   * stored by lorafleet quantize (bitsandbytes' layout) trains to the same bits; the adapter is an
   * ordinary PEFT adapter, and differs from one trained over the fp32 base.
   */
  @Test
  void qloraOverAnNf4BaseTrainsOnTwoWorkersAsOnOneAndAsOverTheStoredCheckpoint() throws Exception {
    var nf4 = io.lorafleet.worker.quant.Quantization.NF4;
    float[] one = Trainer.run(spark, cfg("qlora1", 1, 2, "adamw", false).toBuilder().quantize(nf4).build(), false).adapter();
    Trainer.Result two = Trainer.run(spark, cfg("qlora2", 2, 2, "adamw", false).toBuilder().quantize(nf4).build(), false);
    assertArrayEquals(one, two.adapter(), 1e-6f, "2 workers make the 1-worker update");
    Path stored = dir.resolve("model-nf4");
    io.lorafleet.worker.model.QuantizeModel.write(model, stored, true);
    TrainConfig c = cfg("qlora-stored", 2, 2, "adamw", false);
    TrainConfig overStored = c.toBuilder().model(stored.toString()).build();
    assertArrayEquals(two.adapter(), Trainer.run(spark, overStored, false).adapter(), 0f, "the stored checkpoint dequantizes to the same weights");
    float[] fp = Trainer.run(spark, cfg("qlora-fp32", 2, 2, "adamw", false), false).adapter();
    assertFalse(java.util.Arrays.equals(fp, two.adapter()), "the quantized base changes the gradients");
    var conf = new com.fasterxml.jackson.databind.ObjectMapper().readTree(two.finalAdapter().resolve("adapter_config.json").toFile());
    assertEquals("LORA", conf.get("peft_type").asText());
    try (var base = io.lorafleet.worker.model.LanguageModel.load(model, ai.djl.Device.cpu(), ai.djl.ndarray.types.DataType.FLOAT32)) {
      assertArrayEquals(two.adapter(), io.lorafleet.worker.lora.AdapterFormat.read(two.finalAdapter(), base).values(), "it loads onto the fp32 base");
    }
    assertTrue(Files.readString(dir.resolve("qlora2/train_config.yaml")).matches("(?s).*method: \"?nf4.*"), "train_config.yaml records --quantize");
    // a GPTQ INT4 base (v1 zeros, act-order g_idx) trains on 2 workers as on 1 as well
    Path gptq = io.lorafleet.worker.QuantFixtures.gptq(model, dir.resolve("model-gptq"), 5, 16, true, false);
    float[][] byWorkers = new float[2][];
    for (int w = 1; w <= 2; w++) {
      TrainConfig g = cfg("gptq" + w, w, 2, "adamw", false);
      byWorkers[w - 1] = Trainer.run(spark, g.toBuilder().model(gptq.toString()).build(), false).adapter();
    }
    assertArrayEquals(byWorkers[0], byWorkers[1], 1e-6f, "GPTQ: 2 workers make the 1-worker update");
    var e = assertThrows(IllegalArgumentException.class, () -> tuned(cfg("x", 1, 1, "sgd", false).toBuilder().quantize(nf4).build(),
        t -> t.withMethod(DoraMethod.INSTANCE)));
    assertTrue(e.getMessage().contains("--use-dora") && e.getMessage().contains("--quantize nf4"), e.getMessage());
  }

  /** GPT-J (parallel attention and MLP, partial rotary, biased lm_head): 2 workers make the 1-worker update, and the adapter loads back. */
  @Test
  void gptjTrainsOnTwoWorkersAsOnOne() throws Exception {
    Path gptj = dir.resolve("model-gptj"); // the same words, so the same tokenizer as the prepared data
    ModelDirectory.initModel(gptj, new TinyModelSpec("gptj", 2, 32, 4, 4, 64, 1, 64, false), List.of("a", "b", "c", "d", "e", "f", "g", "h", "="), 4);
    float[][] byWorkers = new float[2][];
    Trainer.Result last = null;
    for (int w = 1; w <= 2; w++) {
      TrainConfig g = cfg("gptj" + w, w, 2, "adamw", false);
      last = Trainer.run(spark, g.toBuilder().model(gptj.toString()).tuner(LoraConfig.ofTargetModules(4, 8, "q_proj,v_proj,fc_in,out_proj")).build(), false);
      byWorkers[w - 1] = last.adapter();
    }
    assertArrayEquals(byWorkers[0], byWorkers[1], 1e-6f, "2 workers make the 1-worker update");
    try (LanguageModel base = LanguageModel.load(gptj, Device.cpu(), DataType.FLOAT32)) {
      var loaded = io.lorafleet.worker.lora.AdapterFormat.read(last.finalAdapter(), base);
      assertArrayEquals(byWorkers[1], loaded.values());
      float[] init = loaded.model().initialParams(7);
      assertFalse(java.util.Arrays.equals(init, byWorkers[1]), "training moved the adapter");
    }
    var st = io.lorafleet.worker.safetensors.SafetensorsReader.open(last.finalAdapter().resolve("adapter_model.safetensors"));
    assertTrue(st.tensors().containsKey("base_model.model.transformer.h.1.mlp.fc_in.lora_B.weight"), st.tensors().keySet().toString());
  }

  @Test
  void peftOptionsTrainOnTwoWorkersAsOnOneAreWrittenAsPeftWritesThemAndLoraPlusScalesB() throws Exception {
    // rsLoRA, a rank and an alpha pattern, one layer only, and A and B both random (so that both get a gradient at step 1)
    UnaryOperator<LoraConfig> o = t -> t.withRslora(true).withPatterns(Map.of("v_proj", 2), Map.of("down_proj", 4.0)).withLayers(List.of(1)).withInit("false");
    float[] one = Trainer.run(spark, tuned(cfg("opts1", 1, 1, "sgd", false), o), false).adapter();
    float[] two = Trainer.run(spark, tuned(cfg("opts2", 2, 1, "sgd", false), o), false).adapter();
    assertArrayEquals(one, two, 1e-6f, "2 workers make the 1-worker update");
    var conf = new com.fasterxml.jackson.databind.ObjectMapper().readTree(dir.resolve("opts2/adapter/adapter_config.json").toFile());
    assertTrue(conf.get("use_rslora").asBoolean(), conf.toString());
    assertEquals(2, conf.get("rank_pattern").get("v_proj").asInt());
    assertEquals(4.0, conf.get("alpha_pattern").get("down_proj").asDouble());
    assertEquals("[1]", conf.get("layers_to_transform").toString());
    assertTrue(conf.get("init_lora_weights").isBoolean() && !conf.get("init_lora_weights").asBoolean());
    LoraModel lora = LoraModel.create(ModelCache.skeleton(model.toString()), tuned(cfg("x", 1, 1, "sgd", false), o).lora());
    assertTrue(lora.layout().slots().stream().allMatch(sl -> sl.key().contains(".layers.1.")), "layers_to_transform [1]");
    float[] init = lora.initialParams(7);
    float[] plus = Trainer.run(spark, tuned(cfg("loraplus", 2, 1, "sgd", false), o).toBuilder().loraplusLrRatio(4).build(), false).adapter();
    for (var sl : lora.layout().slots()) {
      for (int i = sl.offset(); i < sl.offset() + sl.size(); i++) {
        double plain = two[i] - init[i];
        double fast = plus[i] - init[i];
        if (sl.key().contains("lora_B")) {
          assertEquals(4 * plain, fast, 1e-5 * Math.abs(plain) + 2e-7, sl.key() + ": LoRA+ trains B at 4 x lr");
        } else {
          assertEquals(two[i], plus[i], 0f, sl.key() + ": A at lr");
        }
      }
    }
  }

  /** The reference for one step: the whole first global batch in this process, SGD at lr 0.05, as cfg(...) trains. */
  static float[] sgdStepInOneProcess(LoraModel lora, float[] start) throws Exception {
    float[] p = start.clone();
    StepResult r = TrainStep.run(lora, p, GlobalBatch.microBatches(firstGlobalBatch(), 6), Dropout.Plan.NONE);
    for (int i = 0; i < p.length; i++) {
      p[i] -= 0.05f * (float) (r.gradSum()[i] / r.tokens());
    }
    return p;
  }

  @Test
  void doraTrainsOnTwoWorkersAsOnOneProcessWithMagnitudesFromTheWorkers() throws Exception {
    UnaryOperator<LoraConfig> dora = t -> t.withInit("false").withMethod(DoraMethod.INSTANCE);
    float[] one = Trainer.run(spark, tuned(cfg("dora1", 1, 1, "sgd", false), dora), false).adapter();
    float[] two = Trainer.run(spark, tuned(cfg("dora2", 2, 1, "sgd", false), dora), false).adapter();
    assertArrayEquals(one, two, 1e-6f, "2 workers make the 1-worker update");
    try (LanguageModel base = LanguageModel.load(model, Device.cpu(), DataType.FLOAT32)) {
      // one process: magnitudes from the loaded weights, then the same SGD step
      LoraModel lora = LoraModel.create(base, tuned(cfg("x", 1, 1, "sgd", false), dora).lora());
      float[] p = sgdStepInOneProcess(lora, lora.initialParams(7));
      assertArrayEquals(p, two, 1e-6f, "the driver's run equals a single process's");
      var m = lora.layout().slots().stream().filter(sl -> sl.key().endsWith("lora_magnitude_vector")).findFirst().orElseThrow();
      float[] init = lora.initialParams(7);
      assertTrue(two[m.offset()] != init[m.offset()], "the magnitudes train");
    }
    var conf = new com.fasterxml.jackson.databind.ObjectMapper().readTree(dir.resolve("dora2/adapter/adapter_config.json").toFile());
    assertTrue(conf.get("use_dora").asBoolean(), conf.toString());
    var e = assertThrows(IllegalArgumentException.class, () -> tuned(TrainConfig.builder(model.toString(), data.toString(), dir.resolve("dora-avg").toString())
        .tuner(LoraConfig.ofTargetModules(4, 8, "q_proj,v_proj,down_proj")).workers(1).steps(1).globalBatch(6).microBatch(2).lr(0.05)
        .schedule("constant").optimizer("sgd").clip(0).checkpointEvery(2).keepCheckpoints(3).seed(7).timeoutMs(60_000).maxAttempts(2).evalExamples(0)
        .averageLast(2).build(), dora));
    assertTrue(e.getMessage().contains("averaging DoRA adapters is not supported"), e.getMessage());
  }

  /**
   * A PEFT method defined only in the test sources ({@link ScaledLoraMethod}) and registered through
   * a ServiceLoader entry in the test resources trains with no change to main code: found by its
   * --peft-type name, trained on 2 workers, written with its own peft_type and read back through its
   * provider. It is LoRA with its scaling times gamma, so it trains exactly as LoRA with alpha·gamma.
   */
  @Test
  void aMethodRegisteredOnlyInTheTestSourcesTrainsAsItsLoraEquivalent() throws Exception {
    LoraConfig toy = io.lorafleet.worker.lora.PeftMethods.configure("scaled-lora", new io.lorafleet.worker.lora.PeftMethods.Options(
        Map.of("gamma", "0.5"), java.util.Set.of()), LoraConfig.ofTargetModules(4, 8, "q_proj,v_proj,down_proj"));
    float[] scaled = Trainer.run(spark, cfg("scaled", 2, 2, "sgd", false).toBuilder().tuner(toy).build(), false).adapter();
    float[] plain = Trainer.run(spark, cfg("scaled-plain", 2, 2, "sgd", false).toBuilder()
        .tuner(LoraConfig.ofTargetModules(4, 4, "q_proj,v_proj,down_proj")).build(), false).adapter();
    assertArrayEquals(plain, scaled, 1e-7f, "scale 0.5 x 8/4 is LoRA's 4/4");
    assertTrue(java.util.stream.IntStream.range(0, plain.length).anyMatch(i -> plain[i] != 0f), "the run trained");
    LoraConfig read = AdapterFormat.readConfig(dir.resolve("scaled/adapter"));
    assertEquals(new ScaledLoraMethod(0.5), read.method(), "written as its peft_type and read back by its provider");
    assertEquals("SCALED_LORA", read.peftType());
  }

  @Test
  void veraTrainsOnTwoWorkersAsOnOneProcessAndItsProjectionsStayFrozen() throws Exception {
    UnaryOperator<LoraConfig> vera = t -> t.withMethod(new VeraMethod(0.1, 5));
    float[] one = Trainer.run(spark, tuned(cfg("vera1", 1, 2, "adamw", false), vera), false).adapter();
    float[] two = Trainer.run(spark, tuned(cfg("vera2", 2, 2, "adamw", false), vera), false).adapter();
    assertArrayEquals(one, two, 1e-6f, "2 workers make the 1-worker update");
    try (LanguageModel base = LanguageModel.load(model, Device.cpu(), DataType.FLOAT32)) {
      LoraModel lora = LoraModel.create(base, tuned(cfg("x", 1, 1, "sgd", false), vera).lora());
      float[] p = lora.initialParams(7);
      for (var sl : lora.layout().slots()) {
        for (int i = sl.offset(); i < sl.offset() + sl.size(); i++) {
          if (sl.frozen()) {
            assertEquals(p[i], two[i], 0f, sl.key() + " is frozen");
          }
        }
      }
      float[] sgd = Trainer.run(spark, tuned(cfg("vera-sgd", 2, 1, "sgd", false), vera), false).adapter();
      assertArrayEquals(sgdStepInOneProcess(lora, p), sgd, 1e-6f, "the driver's SGD step equals a single process's");
    }
    var conf = new com.fasterxml.jackson.databind.ObjectMapper().readTree(dir.resolve("vera2/adapter/adapter_config.json").toFile());
    assertEquals("VERA", conf.get("peft_type").asText(), conf.toString());
    assertEquals(5, conf.get("projection_prng_key").asInt());
    // continued from its own adapter with the config train adopts from it (TrainCommandTest): it trains on as VeRA
    Path adapter = dir.resolve("vera2/adapter");
    Trainer.run(spark, cfg("vera-cont", 2, 1, "sgd", false).toBuilder().tuner(AdapterFormat.readConfig(adapter)).initAdapter(adapter.toString())
        .build(), false);
    var cont = new com.fasterxml.jackson.databind.ObjectMapper().readTree(dir.resolve("vera-cont/adapter/adapter_config.json").toFile());
    assertEquals("VERA", cont.get("peft_type").asText(), cont.toString());
    assertEquals(5, cont.get("projection_prng_key").asInt());
  }

  @Test
  void adaloraAllocatesRanksOnTheDriverOnTwoWorkersAsOnOneAndResumesExactly() throws Exception {
    // init_r 2, target_r 1 on 6 modules: budget 12 -> 6 over steps 2..4 (tinit 1, tfinal 2, total 6), fixed after
    UnaryOperator<LoraConfig> ada = t -> t.withMethod(AdaloraMethod.of(2, 1, 1, 2, 1, 0.85, 0.85, 0.5, 6));
    Trainer.Result one = Trainer.run(spark, tuned(cfg("ada1", 1, 6, "adamw", false), ada), false);
    Trainer.Result two = Trainer.run(spark, tuned(cfg("ada2", 2, 6, "adamw", false), ada), false);
    var json = new com.fasterxml.jackson.databind.ObjectMapper();
    var conf1 = json.readTree(dir.resolve("ada1/adapter/adapter_config.json").toFile());
    var conf2 = json.readTree(dir.resolve("ada2/adapter/adapter_config.json").toFile());
    assertEquals("ADALORA", conf2.get("peft_type").asText());
    assertEquals(conf1.get("rank_pattern"), conf2.get("rank_pattern"), "the same allocation on 1 and 2 workers");
    float[] a1 = io.lorafleet.worker.lora.AdapterFormat.read(dir.resolve("ada1/adapter"), ModelCache.skeleton(model.toString())).values();
    float[] a2 = io.lorafleet.worker.lora.AdapterFormat.read(dir.resolve("ada2/adapter"), ModelCache.skeleton(model.toString())).values();
    assertArrayEquals(a1, a2, 1e-6f, "2 workers make the 1-worker updates");
    int kept = 0;
    int total = 0;
    for (var e : (Iterable<java.util.Map.Entry<String, com.fasterxml.jackson.databind.JsonNode>>) () -> conf2.get("rank_pattern").fields()) {
      for (var b : e.getValue()) {
        kept += b.asBoolean() ? 1 : 0;
        total++;
      }
    }
    assertEquals(12, total, conf2.toString());
    assertTrue(kept <= 6 && kept > 0, "the target budget of 6 ranks: " + conf2.get("rank_pattern"));
    // resume: 4 steps, then on to 6 from checkpoint-4, gives the uninterrupted run's adapter and allocation
    Trainer.run(spark, tuned(cfg("ada-part", 2, 4, "adamw", false), ada), false);
    Trainer.run(spark, tuned(cfg("ada-part", 2, 6, "adamw", true), ada), false);
    assertEquals(conf2.get("rank_pattern"), json.readTree(dir.resolve("ada-part/adapter/adapter_config.json").toFile()).get("rank_pattern"));
    float[] resumed = io.lorafleet.worker.lora.AdapterFormat.read(dir.resolve("ada-part/adapter"), ModelCache.skeleton(model.toString())).values();
    assertArrayEquals(a2, resumed, 1e-6f, "the importance state and the allocation are checkpointed");
  }

  @Test
  void withoutATerminalProgressIsWholeLogLines() throws Exception {
    java.io.PrintStream old = System.out;
    java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
    System.setOut(new java.io.PrintStream(out, true));
    try {
      Trainer.run(spark, cfg("progress", 2, 4, "adamw", false), true); // Surefire's JVM has no console
    } finally {
      System.setOut(old);
    }
    String printed = out.toString();
    assertTrue(!printed.contains("\r"), "no carriage returns in a log: " + printed);
    for (int s = 1; s <= 4; s++) {
      assertTrue(printed.contains("step " + s + "/4  loss "), "a line for step " + s + " (one every max(1, steps/20)): " + printed);
    }
  }

  @Test
  void nWorkersMakeTheSameUpdateAsOne() throws Exception {
    float[][] results = new float[4][];
    for (int n : new int[] {1, 2, 3}) {
      results[n] = Trainer.run(spark, cfg("eq" + n, n, 1, "sgd", false), false).adapter();
    }
    // Reference: one process, the whole global batch, the same SGD update.
    try (LanguageModel base = LanguageModel.load(model, Device.cpu(), DataType.FLOAT32)) {
      LoraModel lora = LoraModel.create(base, cfg("x", 1, 1, "sgd", false).lora());
      float[] p = lora.initialParams(7);
      float[] b0 = lora.initialParams(7);
      // B starts at zero, so give the step a non-trivial starting point: compare the first update from the true init
      StepResult r = TrainStep.run(lora, p, GlobalBatch.microBatches(firstGlobalBatch(), 6), Dropout.Plan.NONE);
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
      // the step's counters, whatever N: target tokens (the loss's denominator) and input tokens, the rows' own, padding excluded
      long input = firstGlobalBatch().stream().mapToLong(e -> e.inputIds().length).sum();
      for (int n : new int[] {1, 2, 3}) {
        assertEquals(List.of((int) r.tokens()), metric(dir.resolve("eq" + n), "tokens"), n + " workers");
        assertEquals(List.of((int) input), metric(dir.resolve("eq" + n), "input_tokens"), n + " workers");
      }
    }
  }

  /**
   * LoRA dropout draws each row's masks from its position in the data order (not from the worker or
   * the micro-batch), so 1, 2 and 3 workers train the same adapter with dropout on; and dropout is
   * on (the adapter differs from the run without it).
   */
  @Test
  void loraDropoutFollowsTheRowsSoNWorkersTrainAsOne() throws Exception {
    float[][] got = new float[4][];
    for (int n : new int[] {1, 2, 3}) {
      got[n] = Trainer.run(spark, tuned(cfg("drop" + n, n, 3, "sgd", false), t -> t.withDropout(0.3)), false).adapter();
    }
    for (int n : new int[] {2, 3}) {
      assertArrayEquals(got[1], got[n], 1e-6f, n + " workers with lora_dropout 0.3");
    }
    float[] none = Trainer.run(spark, cfg("drop0", 1, 3, "sgd", false), false).adapter();
    double diff = 0;
    for (int i = 0; i < none.length; i++) {
      diff = Math.max(diff, Math.abs(none[i] - got[1][i]));
    }
    assertTrue(diff > 1e-3, "dropout changed the training: " + diff);
  }

  /**
   * --ema-decay and --bema (with a burn-in and --average-every 2): ema/ and bema/, and the state in
   * every checkpoint, equal the updates computed here in float64 from each step's adapter (a
   * checkpoint every step), at 1 and at 2 workers; a run stopped at step 3 and resumed to 5
   * continues them to the uninterrupted run's bits.
   */
  @Test
  void emaAndBemaFollowTheirUpdatesOnOneAndTwoWorkersAndAcrossAResume() throws Exception {
    io.lorafleet.driver.average.Bema bema = new io.lorafleet.driver.average.Bema(true, 0.5, 0.2, 10, 1, 1.0, 0.0);
    java.util.function.BiFunction<String, Integer, TrainConfig> avg = (out, workers) -> cfg(out, workers, 5, "adamw", false).toBuilder()
        .checkpointEvery(1).keepCheckpoints(10).emaDecay(0.8).bema(bema).averageEvery(2).build();
    var base = ModelCache.skeleton(model.toString());
    float[][] finals = new float[2][];
    for (int workers : new int[] {1, 2}) {
      String out = "avg" + workers;
      Trainer.run(spark, avg.apply(out, workers), false);
      float[][] theta = new float[6][];
      theta[0] = LoraModel.create(base, avg.apply(out, workers).lora()).initialParams(7);
      for (int t = 1; t <= 5; t++) {
        theta[t] = AdapterFormat.read(dir.resolve(out).resolve(Checkpoints.dirName(t)), base).values();
      }
      int n = theta[0].length;
      double[] ema = new double[n];
      double[] mu = new double[n];
      double[] bemaWant = new double[n];
      for (int i = 0; i < n; i++) {
        ema[i] = theta[0][i];
      }
      for (int t = 1; t <= 5; t++) {
        for (int i = 0; i < n; i++) {
          if (t % 2 == 0) {
            ema[i] = 0.8 * ema[i] + 0.2 * theta[t][i];
          }
          if (t == 1) { // tau: theta0 and the EMA taken
            mu[i] = theta[1][i];
            bemaWant[i] = theta[1][i];
          } else if ((t - 1) % 2 == 0) { // t - tau = 2, 4
            double beta = Math.pow(10 + (t - 1), -0.5);
            double alpha = Math.pow(10 + (t - 1), -0.2);
            mu[i] = (1 - beta) * mu[i] + beta * theta[t][i];
            bemaWant[i] = mu[i] + alpha * (theta[t][i] - theta[1][i]);
          }
        }
        var saved = io.lorafleet.worker.safetensors.SafetensorsReader.open(dir.resolve(out).resolve(Checkpoints.dirName(t)).resolve(Checkpoints.OPTIMIZER));
        assertClose(ema, saved.read("lorafleet.ema").toFloatArray(), workers + " workers, the EMA in checkpoint-" + t);
        assertClose(bemaWant, saved.read("lorafleet.bema").toFloatArray(), workers + " workers, BEMA in checkpoint-" + t);
      }
      assertClose(ema, AdapterFormat.read(dir.resolve(out).resolve(Trainer.EMA), base).values(), workers + " workers, ema/");
      assertClose(bemaWant, AdapterFormat.read(dir.resolve(out).resolve(Trainer.BEMA), base).values(), workers + " workers, bema/");
      double moved = 0;
      for (int i = 0; i < n; i++) {
        moved = Math.max(moved, Math.abs(bemaWant[i] - ema[i]));
      }
      assertTrue(moved > 1e-3, "BEMA is not the EMA: " + moved);
      finals[workers - 1] = AdapterFormat.read(dir.resolve(out).resolve(Trainer.BEMA), base).values();
    }
    assertArrayEquals(finals[0], finals[1], 1e-5f, "2 workers keep the 1-worker BEMA");
    Trainer.run(spark, avg.apply("avg-part", 2).toBuilder().steps(3).build(), false);
    Trainer.run(spark, avg.apply("avg-part", 2).toBuilder().resume(true).build(), false);
    for (String a : List.of(Trainer.EMA, Trainer.BEMA)) {
      assertArrayEquals(AdapterFormat.read(dir.resolve("avg2").resolve(a), base).values(), AdapterFormat.read(dir.resolve("avg-part").resolve(a), base).values(),
          a + " resumed from checkpoint-3 is the uninterrupted run's");
    }
  }

  /**
   * --schedule warmup_stable_merge: constant_with_warmup's rates, and adapter/ is the merge of the
   * last --merge-window checkpoints (here factor-wise, so the merge is their weighted mean),
   * uniform or EMA-weighted; the last step's adapter stays in its checkpoint. A window the run
   * cannot fill, or one given without the schedule, is refused by flag.
   */
  @Test
  void warmupStableMergeMakesTheFinalAdapterTheMergeOfTheLastCheckpoints() throws Exception {
    var base = ModelCache.skeleton(model.toString());
    for (double decay : new double[] {0, 0.5}) {
      String out = "wsm" + decay;
      Trainer.run(spark, cfg(out, 2, 5, "adamw", false).toBuilder().schedule("warmup_stable_merge").warmup(2).checkpointEvery(1).keepCheckpoints(5)
          .mergeWindow(3).mergeDecay(decay).averageMode("factor").build(), false);
      assertEquals(List.of(0.0, 0.025, 0.05, 0.05, 0.05), metricDoubles(dir.resolve(out), "lr"), "warm-up, then stable");
      double[] w = decay == 0 ? new double[] {1, 1, 1} : new double[] {0.25, 0.5, 1};
      double sum = w[0] + w[1] + w[2];
      float[][] ck = new float[3][];
      for (int i = 0; i < 3; i++) {
        ck[i] = AdapterFormat.read(dir.resolve(out).resolve(Checkpoints.dirName(3 + i)), base).values();
      }
      double[] want = new double[ck[0].length];
      for (int k = 0; k < want.length; k++) {
        want[k] = (w[0] * ck[0][k] + w[1] * ck[1][k] + w[2] * ck[2][k]) / sum;
      }
      assertClose(want, AdapterFormat.read(dir.resolve(out).resolve("adapter"), base).values(), out + ": adapter/ merges checkpoints 3, 4 and 5");
    }
    var wide = assertThrows(IllegalArgumentException.class, () -> cfg("x", 2, 5, "adamw", false).toBuilder().schedule("warmup_stable_merge")
        .checkpointEvery(2).keepCheckpoints(5).mergeWindow(4).build());
    assertTrue(wide.getMessage().contains("--merge-window") && wide.getMessage().contains("the 3 checkpoints"), wide.getMessage());
    var alone = assertThrows(IllegalArgumentException.class, () -> cfg("x", 2, 5, "adamw", false).toBuilder().mergeWindow(2).build());
    assertTrue(alone.getMessage().contains("are for --schedule warmup_stable_merge"), alone.getMessage());
  }

  /**
   * --metric-for-best-model eval_loss with an EMA beside the live adapter: best/ holds the candidate
   * with the lowest validation loss of any evaluation (metrics.jsonl's), it is that candidate's
   * adapter at that step, trainer_state.json says so, --load-best-model-at-end makes it adapter/, and
   * eval --run on the same validation split finds the same loss for it. Early stopping with a
   * threshold nothing can pass stops after --early-stopping-patience evaluations, checkpointed.
   */
  @Test
  void theBestCandidateIsKeptAsEvalFindsItAndEarlyStoppingStopsOnThePatienceRule() throws Exception {
    List<String> words = List.of("a", "b", "c", "d", "e", "f", "g", "h");
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < 48; i++) {
      sb.append("{\"context\": \"").append(words.get(i % 8)).append(" ").append(words.get((i / 8) % 8)).append(" =\", \"target\": \"")
          .append(words.get((i + 1) % 8)).append("\"}\n");
    }
    Files.writeString(dir.resolve("best.jsonl"), sb);
    Path vdata = dir.resolve("best-data");
    Prepare.run(spark, PrepareOptions.builder(List.of(dir.resolve("best.jsonl").toString()), model.toString(), vdata.toString()).maxSeqLen(32)
        .valFraction(0.25).seed(2).shards(2).maxBadFraction(0).build());
    TrainConfig c = cfg("best", 2, 6, "adamw", false).toBuilder().data(vdata.toString()).checkpointEvery(1).keepCheckpoints(10).evalEvery(1)
        .evalExamples(1000).emaDecay(0.5).best(TrainConfig.Selection.of("eval_loss", null, true, 0, 0)).build();
    assertTrue(!c.eval().best().greaterIsBetter(), "a loss: lower is better, as transformers defaults it");
    Trainer.run(spark, c, false);
    Path run = dir.resolve("best");
    var json = new com.fasterxml.jackson.databind.ObjectMapper();
    double want = Double.NaN;
    String wantCandidate = "";
    int wantStep = -1;
    for (String line : Files.readAllLines(run.resolve(Trainer.METRICS))) {
      var m = json.readTree(line);
      for (String cand : List.of("adapter", "ema")) {
        double v = m.get(cand.equals("adapter") ? "val_loss" : "val_loss_ema").asDouble();
        if (Double.isNaN(want) || v < want) {
          want = v;
          wantCandidate = cand;
          wantStep = m.get("step").asInt();
        }
      }
    }
    var base = ModelCache.skeleton(model.toString());
    var state = json.readTree(run.resolve(Checkpoints.dirName(6)).resolve(Checkpoints.STATE).toFile());
    assertEquals(want, state.get("best_metric").asDouble(), 0, state.toString());
    assertEquals(wantCandidate, state.get("best_candidate").asText());
    assertEquals(wantStep, state.get("best_step").asInt());
    assertTrue(state.get("best_model_checkpoint").asText().endsWith("/best"), state.toString());
    Path ck = run.resolve(Checkpoints.dirName(wantStep));
    float[] expected = wantCandidate.equals("adapter") ? AdapterFormat.read(ck, base).values()
        : io.lorafleet.worker.safetensors.SafetensorsReader.open(ck.resolve(Checkpoints.OPTIMIZER)).read("lorafleet.ema").toFloatArray();
    assertArrayEquals(expected, AdapterFormat.read(run.resolve(Trainer.BEST), base).values(), "best/ is " + wantCandidate + " at step " + wantStep);
    assertArrayEquals(expected, AdapterFormat.read(run.resolve("adapter"), base).values(), "--load-best-model-at-end");
    var evaluated = io.lorafleet.driver.eval.RunEvaluation.candidates(spark, model.toString(), io.lorafleet.worker.quant.Quantization.NONE,
        List.of(new io.lorafleet.driver.eval.RunEvaluation.Row("best", -1, java.util.Optional.of(run.resolve(Trainer.BEST).toString()),
            io.lorafleet.driver.eval.Scores.ZERO)), vdata.resolve("validation").toString(), 2, 1000);
    assertEquals(want, evaluated.get(0).scores().loss(), 1e-6 * Math.abs(want), "eval --run's loss of best/ on the same split");
    // by greedy exact match (greater is better), scored on the workers by eval's own code: eval --run finds the same for best/
    TrainConfig em = c.toBuilder().output(dir.resolve("best-em").toString()).best(TrainConfig.Selection.of("eval_exact_match", null, false, 0, 0)).build();
    assertTrue(em.eval().best().greaterIsBetter());
    Trainer.run(spark, em, false);
    var emState = json.readTree(dir.resolve("best-em").resolve(Checkpoints.dirName(6)).resolve(Checkpoints.STATE).toFile());
    var emEval = io.lorafleet.driver.eval.RunEvaluation.candidates(spark, model.toString(), io.lorafleet.worker.quant.Quantization.NONE,
        List.of(new io.lorafleet.driver.eval.RunEvaluation.Row("best", -1, java.util.Optional.of(dir.resolve("best-em").resolve(Trainer.BEST).toString()),
            io.lorafleet.driver.eval.Scores.ZERO)), vdata.resolve("validation").toString(), 2, 1000);
    assertEquals(emEval.get(0).scores().exactMatch(), emState.get("best_metric").asDouble(), 1e-12, emState.toString());
    double emMax = 0;
    for (String line : Files.readAllLines(dir.resolve("best-em").resolve(Trainer.METRICS))) {
      var m = json.readTree(line);
      emMax = Math.max(emMax, Math.max(m.get("val_exact_match").asDouble(), m.get("val_exact_match_ema").asDouble()));
    }
    assertEquals(emMax, emState.get("best_metric").asDouble(), 0, "the highest exact match of any candidate at any evaluation");
    var refused = assertThrows(IllegalArgumentException.class, () -> Trainer.run(spark, c.toBuilder().output(dir.resolve("best-acc").toString())
        .best(TrainConfig.Selection.of("accuracy", null, false, 0, 0)).build(), false));
    assertTrue(refused.getMessage().contains("accuracy is not a metric of llama"), refused.getMessage());
    // early stopping: the first evaluation sets the best; the next two pass no threshold of 1e9, so the run ends at step 3
    Trainer.Result stopped = Trainer.run(spark, c.toBuilder().output(dir.resolve("stopped").toString())
        .best(TrainConfig.Selection.of("loss", null, false, 2, 1e9)).build(), false);
    assertEquals(3, stopped.losses().size(), "2 evaluations without improvement after the first");
    assertTrue(Files.isDirectory(dir.resolve("stopped").resolve(Checkpoints.dirName(3))), "the stopping step is checkpointed");
    assertEquals(2, json.readTree(dir.resolve("stopped").resolve(Checkpoints.dirName(3)).resolve(Checkpoints.STATE).toFile())
        .get("early_stopping_patience_counter").asInt());
  }

  static List<Double> metricDoubles(Path run, String field) throws Exception {
    List<Double> out = new java.util.ArrayList<>();
    for (String line : Files.readAllLines(run.resolve(Trainer.METRICS))) {
      out.add(new com.fasterxml.jackson.databind.ObjectMapper().readTree(line).get(field).asDouble());
    }
    return out;
  }

  /** want (float64) against got (the driver's float32 averages): within float32 rounding of the largest value. */
  static void assertClose(double[] want, float[] got, String what) {
    assertEquals(want.length, got.length, what);
    double max = 0;
    for (double w : want) {
      max = Math.max(max, Math.abs(w));
    }
    for (int i = 0; i < want.length; i++) {
      assertEquals(want[i], got[i], 1e-6 * max, what + " [" + i + "]");
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
    assertTrue(Files.readString(dir.resolve("full/train_config.yaml")).contains("globalBatch: 6"), "the resolved configuration");
    for (Path c : Checkpoints.list(dir.resolve("full"))) {
      assertTrue(Files.isRegularFile(c.resolve("train_config.yaml")), c + " carries the configuration");
      // transformers' Trainer fields, so that HF tools read the state
      var st = new com.fasterxml.jackson.databind.ObjectMapper().readTree(c.resolve("trainer_state.json").toFile());
      int step = st.get("step").asInt();
      assertEquals(step, st.get("global_step").asInt());
      assertEquals(6, st.get("max_steps").asInt());
      assertEquals(step, st.get("log_history").size(), st.toString());
      assertEquals(full.get(step - 1), st.get("log_history").get(step - 1).get("loss").asDouble(), 1e-12);
      assertEquals(0.05, st.get("log_history").get(0).get("learning_rate").asDouble(), 1e-12);
    }
  }

  @Test
  void averagedAdapterAndMergedModelEvaluateOnSpark() throws Exception {
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < 40; i++) {
      sb.append("{\"context\": \"a b c =\", \"target\": \"").append("abcdefgh".charAt(i % 8)).append(' ').append("abcdefgh".charAt(i / 8)).append("\"}\n");
    }
    Files.writeString(dir.resolve("v.jsonl"), sb);
    Path vdata = dir.resolve("vdata");
    Prepare.run(spark, PrepareOptions.builder(List.of(dir.resolve("v.jsonl").toString()), model.toString(), vdata.toString()).maxSeqLen(32)
        .truncation("drop").seed(1).valFraction(0.25).shards(2).maxBadFraction(0).build());
    var noVal = assertThrows(IllegalArgumentException.class, () -> Trainer.run(spark, cfg("noval", 1, 1, "sgd", false)
        .toBuilder().evalEvery(1).evalExamples(1).build(), false));
    assertTrue(noVal.getMessage().contains("needs validation examples"), noVal.getMessage());
    TrainConfig c = TrainConfig.builder(model.toString(), vdata.toString(), dir.resolve("avg").toString())
        .tuner(LoraConfig.ofTargetModules(4, 8, "q_proj,v_proj,down_proj")).steps(6).globalBatch(6).microBatch(2).lr(0.05).schedule("constant")
        .clip(0).checkpointEvery(2).keepCheckpoints(3).seed(7).timeoutMs(60_000).maxAttempts(2).evalEvery(2).evalExamples(4).averageLast(3)
        .baseModelId("lorafleet/tiny-llama").build();
    Trainer.Result r = Trainer.run(spark, c, false);
    Path avg = dir.resolve("avg/averaged");
    assertTrue(Files.isRegularFile(avg.resolve(AdapterFormat.WEIGHTS)), "--average-last writes averaged/");
    assertTrue(Files.isRegularFile(dir.resolve("avg/loss.svg")));
    for (String a : List.of("avg/adapter", "avg/averaged")) { // model cards, Hub-style
      String card = Files.readString(dir.resolve(a).resolve("README.md"));
      assertTrue(card.startsWith("---\nbase_model: \"lorafleet/tiny-llama\"\nlibrary_name: peft\ntags:\n- lora\n- lorafleet\n---\n"), card);
      assertEquals("lorafleet/tiny-llama", new com.fasterxml.jackson.databind.ObjectMapper().readTree(dir.resolve(a).resolve("adapter_config.json")
          .toFile()).get("base_model_name_or_path").asText(), "--base-model-id");
      var mf = new com.fasterxml.jackson.databind.ObjectMapper().readTree(vdata.resolve("manifest.json").toFile());
      assertTrue(card.contains("| train | " + mf.at("/splits/train/records").asLong() + " |")
          && card.contains("| validation | " + mf.at("/splits/validation/records").asLong() + " |") && card.contains("## Validation loss"), card);
    }
    // validation loss is computed by the workers (the driver holds no weights): it equals a local evaluation of the final adapter
    List<String> lines = Files.readAllLines(dir.resolve("avg/metrics.jsonl"));
    double reported = new com.fasterxml.jackson.databind.ObjectMapper().readTree(lines.get(lines.size() - 1)).get("val_loss").asDouble();
    try (LanguageModel local = LanguageModel.load(model, Device.cpu(), DataType.FLOAT32)) {
      LoraModel l = LoraModel.create(local, c.lora());
      List<Example> val = Prepare.readSplit(vdata.resolve("validation"));
      double expected = TrainStep.evaluate(l, r.adapter(), GlobalBatch.microBatches(val.subList(0, Math.min(val.size(), 4)), 2)).meanLoss();
      assertEquals(expected, reported, 1e-5 * Math.abs(expected), "val_loss of step 6 over the first --eval-examples 4");
    }
    String split = vdata.resolve("validation").toString();
    var rows = io.lorafleet.driver.eval.RunEvaluation.candidates(spark, model.toString(), io.lorafleet.worker.quant.Quantization.NONE, io.lorafleet.driver.eval.RunEvaluation.runCandidates(dir.resolve("avg").toString(), spark.sparkContext().hadoopConfiguration()), split, 2, 100);
    assertEquals(List.of("base", "checkpoint-2", "checkpoint-4", "checkpoint-6", "averaged", "adapter"), rows.stream().map(io.lorafleet.driver.eval.RunEvaluation.Row::label).toList());
    // one pass for every candidate (per-row adapters of mixed batches) gives the table of one pass per candidate
    for (var row : rows) {
      var alone = io.lorafleet.driver.eval.Evaluator.distributed(spark, model.toString(), io.lorafleet.worker.quant.Quantization.NONE, row.adapter(),
          split, 2, 100);
      assertEquals(alone.loss(), row.scores().loss(), 1e-5 * Math.abs(alone.loss()), row.label() + " loss");
      assertEquals(alone.tokens(), row.scores().tokens(), row.label());
      assertEquals(alone.exact(), row.scores().exact(), row.label() + " exact match");
      assertEquals(alone.examples(), row.scores().examples(), row.label());
    }
    io.lorafleet.driver.eval.RunEvaluation.write(dir.resolve("avg-eval"), rows);
    assertTrue(Files.readString(dir.resolve("avg-eval/eval.json")).contains("\"averaged\""));
    // merged model: the same scores as base + unmerged adapter
    Path merged = dir.resolve("merged");
    try (LanguageModel base = LanguageModel.load(model, Device.cpu(), DataType.FLOAT32)) {
      AdapterFormat.Loaded a = AdapterFormat.read(r.finalAdapter(), base);
      a.model().merge(a.values());
      io.lorafleet.worker.model.ModelDirectory.export(merged, base, model);
    }
    var unmerged = io.lorafleet.driver.eval.Evaluator.distributed(spark, model.toString(), io.lorafleet.worker.quant.Quantization.NONE, java.util.Optional.of(r.finalAdapter().toString()), split, 2, 100);
    var mergedScores = io.lorafleet.driver.eval.Evaluator.distributed(spark, merged.toString(), io.lorafleet.worker.quant.Quantization.NONE, java.util.Optional.empty(), split, 2, 100);
    assertEquals(unmerged.loss(), mergedScores.loss(), 1e-4);
    assertEquals(unmerged.exact(), mergedScores.exact());
    assertEquals(Prepare.readSplit(vdata.resolve("validation")).size(), unmerged.examples());
    assertTrue(unmerged.examples() > 3);
  }

  /** Runs {@code cfg} with the faults of {@code spec} injected (see FaultPlan), on this thread's jobs only. */
  static Trainer.Result withFaults(String spec, TrainConfig cfg) throws Exception {
    spark.sparkContext().setLocalProperty(FaultPlan.CONF, spec);
    try {
      return Trainer.run(spark, cfg, false);
    } finally {
      spark.sparkContext().setLocalProperty(FaultPlan.CONF, null);
    }
  }

  static TrainConfig steady(String out, int maxAttempts) {
    return TrainConfig.builder(model.toString(), data.toString(), dir.resolve(out).toString())
        .tuner(LoraConfig.ofTargetModules(4, 8, "q_proj,v_proj,down_proj")).steps(12).globalBatch(6).microBatch(2).lr(0.05).schedule("constant")
        .clip(0).checkpointEvery(3).keepCheckpoints(10).seed(7).timeoutMs(30_000).maxAttempts(maxAttempts).evalExamples(0).build();
  }

  /** One integer field of every line of run/metrics.jsonl. */
  static List<Integer> metric(Path run, String field) throws Exception {
    List<Integer> values = new java.util.ArrayList<>();
    for (String line : Files.readAllLines(run.resolve("metrics.jsonl"))) {
      values.add(new com.fasterxml.jackson.databind.ObjectMapper().readTree(line).get(field).asInt());
    }
    return values;
  }

  @Test
  void failedWorkersAreRecoveredFromTheLastCheckpointAndEachNewCheckpointRenewsTheBudget() throws Exception {
    Trainer.Result steady = Trainer.run(spark, steady("steady", 2), false);
    // Rank 1 fails at step index 4 (attempt 1), 8 (attempt 2) and 10 (attempt 3); checkpoints every 3 steps.
    // Three failures with --max-attempts 2: each relaunch passed a new checkpoint, so the run goes on.
    Trainer.Result r = withFaults("fail@4:rank=1:attempt=1,fail@8:rank=1:attempt=2,fail@10:rank=1:attempt=3", steady("killed", 2));
    assertEquals(4, r.attempts(), "three relaunches");
    assertEquals(java.util.stream.IntStream.rangeClosed(1, 12).boxed().toList(), metric(dir.resolve("killed"), "step"),
        "metrics.jsonl keeps one line per step across relaunches");
    assertEquals(steady.losses().size(), r.losses().size());
    for (int i = 0; i < steady.losses().size(); i++) {
      assertEquals(steady.losses().get(i), r.losses().get(i), 1e-6, "loss at step " + (i + 1));
    }
    assertArrayEquals(steady.adapter(), r.adapter(), 1e-6f);
  }

  @Test
  void theDriverGivesUpAfterMaxAttemptsWithoutProgress() {
    var e = assertThrows(java.io.IOException.class, () -> withFaults("fail@4:rank=0:attempt=*", steady("doomed", 2)));
    assertTrue(e.getMessage().startsWith("training failed after 2 attempts without a new checkpoint (2 in all); last error:"), e.getMessage());
    assertTrue(e.getMessage().contains("injected fault: rank 0 fails at step 4"), e.getMessage());
  }

  @Test
  void aNonFinitePushNeverReachesTheOptimizer() throws Exception {
    // once: the step fails naming the tensor, the relaunch recomputes it, and the run equals a clean one
    Trainer.Result clean = Trainer.run(spark, steady("nan-clean", 2).toBuilder().output(dir.resolve("nan-clean").toString()).steps(6).build(), false);
    Trainer.Result once = withFaults("nan@4:rank=1", steady("nan-once", 2).toBuilder().output(dir.resolve("nan-once").toString()).steps(6).build());
    assertEquals(2, once.attempts());
    assertArrayEquals(clean.adapter(), once.adapter(), 1e-6f);
    // at the same step again after the relaunch: divergence, not a transient fault; the run stops at once
    var e = assertThrows(java.io.IOException.class, () -> withFaults("nan@4:rank=1:attempt=*",
        steady("nan-always", 5).toBuilder().output(dir.resolve("nan-always").toString()).steps(6).build()));
    assertTrue(e.getMessage().startsWith("training diverged: step 4 gave a non-finite gradient again"), e.getMessage());
    // rank 1 of 2 holds slots 1 and 2 of the 3: its first slot is named, inside the sum its executor pushed
    assertTrue(e.getMessage().contains("slot 1 gave a non-finite gradient (NaN) for 'base_model.model.model.layers.1.mlp.down_proj.lora_B.weight' "
        + "(in the sum pushed for slots 0..2)"), e.getMessage());
  }

  /**
   * A worker's own backward pass finds the non-finite gradient (the fault back-propagates a NaN loss
   * scale). It reports it on the channel, never by failing its task, so the driver names the slot
   * and the tensor and stops the run by the failure's type, not its message.
   */
  @Test
  void aWorkerWhoseBackwardPassDivergesStopsTheRunByType() {
    var e = assertThrows(java.io.IOException.class, () -> withFaults("diverge@1:rank=1:attempt=*", cfg("diverge", 2, 4, "sgd", false)));
    assertTrue(e.getMessage().startsWith("training diverged: step 1 gave a non-finite gradient again"), e.getMessage());
    assertTrue(e.getMessage().contains("step 1, slot 1 gave a non-finite gradient (NaN) for 'base_model.model.model.layers.0."), e.getMessage());
    assertTrue(e.getCause() instanceof io.lorafleet.worker.train.NonFiniteGradientException, String.valueOf(e.getCause()));
  }

  @Test
  void anFp16OverflowIsReportedAsSuchAndSkipsTheStep() throws Exception {
    // an fp16 worker reports an overflow with a flag (never a NaN push); the driver skips that update, as torch's GradScaler does
    Trainer.Result r = withFaults("overflow@2:rank=1", steady("overflow", 2).toBuilder().output(dir.resolve("overflow").toString()).steps(4).build());
    assertEquals(1, r.attempts(), "an overflow is not a failure");
    var json = new com.fasterxml.jackson.databind.ObjectMapper();
    List<String> lines = Files.readAllLines(dir.resolve("overflow/metrics.jsonl"));
    for (int i = 0; i < lines.size(); i++) {
      assertEquals(i == 2, json.readTree(lines.get(i)).path("skipped").asBoolean(false), "only step 3 is skipped: " + lines.get(i));
    }
    assertEquals(3, json.readTree(dir.resolve("overflow/checkpoint-4/trainer_state.json").toFile()).get("optimizer_steps").asInt(),
        "three updates in four steps");
  }

  @Test
  void anIdOutsideTheVocabularyIsReportedWithItsShardAndRow() throws Exception {
    // a copy of the data whose largest shard has an id the model lacks in its last row (same manifest: the tokenizer check passes)
    Path bad = dir.resolve("bad-ids");
    try (var files = Files.walk(data)) {
      for (Path f : files.toList()) {
        Path to = bad.resolve(data.relativize(f).toString());
        if (Files.isDirectory(f)) {
          Files.createDirectories(to);
        } else {
          Files.copy(f, to);
        }
      }
    }
    Path shard;
    try (var s = Files.list(bad.resolve("train"))) {
      shard = s.filter(f -> f.toString().endsWith(".arrow")).max(java.util.Comparator.comparingInt(f -> io.lorafleet.datasets.arrow.ShardReader.read(f)
          .size())).orElseThrow();
    }
    List<Example> rows = new java.util.ArrayList<>(io.lorafleet.datasets.arrow.ShardReader.read(shard));
    int row = rows.size() - 1;
    int[] ids = rows.get(row).inputIds().clone();
    ids[1] = 999;
    rows.set(row, new Example(ids, rows.get(row).labels()));
    io.lorafleet.datasets.arrow.ShardIndex index;
    try (var out = Files.newOutputStream(shard)) {
      index = io.lorafleet.datasets.arrow.ShardWriter.write(out, rows.iterator(), false);
    }
    Files.writeString(shard.resolveSibling(shard.getFileName() + io.lorafleet.datasets.arrow.ShardIndex.SUFFIX), index.toJson().toString());
    TrainConfig c = TrainConfig.builder(model.toString(), bad.toString(), dir.resolve("bad-ids-run").toString())
        .tuner(LoraConfig.ofTargetModules(4, 8, "q_proj")).steps(2).globalBatch(6).microBatch(2).lr(0.05).schedule("constant").optimizer("sgd")
        .clip(0).checkpointEvery(2).keepCheckpoints(3).seed(7).timeoutMs(60_000).maxAttempts(1).evalExamples(0).build();
    var e = assertThrows(java.io.IOException.class, () -> Trainer.run(spark, c, false));
    assertTrue(e.getMessage().contains("split train, shard ") && e.getMessage().contains(shard.getFileName() + ", row " + row
        + ": input_ids[1] is 999 but the model's vocabulary holds ids 0.."),
        e.getMessage());
  }

  @Test
  void aDatasetOnAHadoopUriTrainsByEpochs() throws Exception {
    // --data file:///… is read through Hadoop's FileSystem API, batch by batch; 2 epochs of 7 rows at global batch 6 are 3 steps
    TrainConfig byEpochs = TrainConfig.builder(model.toString(), data.toUri().toString(), dir.resolve("epochs").toString())
        .tuner(LoraConfig.ofTargetModules(4, 8, "q_proj,v_proj")).steps(1).globalBatch(6).microBatch(2).lr(0.05).schedule("constant").clip(0)
        .checkpointEvery(2).keepCheckpoints(3).seed(7).timeoutMs(60_000).maxAttempts(2).evalExamples(0).executorWaitMs(60_000).epochs(2)
        .shuffleWindow(1).build();
    Trainer.Result r = Trainer.run(spark, byEpochs, false);
    assertEquals(3, r.losses().size());
    TrainConfig bySteps = TrainConfig.builder(model.toString(), data.toString(), dir.resolve("epochs-steps").toString())
        .tuner(LoraConfig.ofTargetModules(4, 8, "q_proj,v_proj")).steps(3).globalBatch(6).microBatch(2).lr(0.05).schedule("constant").clip(0)
        .checkpointEvery(2).keepCheckpoints(3).seed(7).timeoutMs(60_000).maxAttempts(2).evalExamples(0).executorWaitMs(60_000).shuffleWindow(1)
        .build();
    assertArrayEquals(Trainer.run(spark, bySteps, false).adapter(), r.adapter(), 0f, "the same rows in the same order, whichever way the data is named");
    // --gradient-checkpointing changes what the workers hold, not what they compute
    Trainer.Result flat = Trainer.run(spark, bySteps.toBuilder().output(dir.resolve("epochs-flat").toString()).steps(3).build().toBuilder().gradientCheckpointing(true).build(), false);
    assertArrayEquals(r.adapter(), flat.adapter(), 1e-6f);
  }

  @Test
  void fp16WorkersScaleTheLossAsGradScalerDoes() throws Exception {
    // fp16 compute on the CPU (as on a GPU): workers back-propagate the driver's loss scale and flag their pushes
    System.setProperty(io.lorafleet.worker.model.Djl.DTYPE_PROPERTY, "fp16");
    Trainer.Result fp16;
    Trainer.Result resumed;
    try {
      fp16 = withFaults("overflow@2:rank=1", steady("fp16", 2).toBuilder().output(dir.resolve("fp16").toString()).steps(4).build());
      resumed = Trainer.run(spark, steady("fp16", 2).toBuilder().output(dir.resolve("fp16").toString()).steps(6).build().toBuilder().resume(true).resumeAuto(false).overwrite(false).build(), false);
    } finally {
      System.clearProperty(io.lorafleet.worker.model.Djl.DTYPE_PROPERTY);
    }
    assertEquals(2, resumed.losses().size());
    var json = new com.fasterxml.jackson.databind.ObjectMapper();
    List<String> lines = Files.readAllLines(dir.resolve("fp16/metrics.jsonl"));
    double[] scales = new double[lines.size()];
    for (int i = 0; i < scales.length; i++) {
      scales[i] = json.readTree(lines.get(i)).get("loss_scale").asDouble();
    }
    // 2^16 at first; every skipped step (a real fp16 overflow, or the one injected at step 3) halves the scale for the next,
    // a clean one keeps it; the resumed steps 5 and 6 continue from checkpoint-4's scale
    assertEquals(6, scales.length);
    assertEquals(65536.0, scales[0]);
    for (int i = 1; i < scales.length; i++) {
      boolean skipped = json.readTree(lines.get(i - 1)).path("skipped").asBoolean(false);
      assertEquals(skipped ? scales[i - 1] / 2 : scales[i - 1], scales[i], "loss scale at step " + (i + 1) + " after " + lines.get(i - 1));
    }
    assertTrue(json.readTree(lines.get(2)).get("skipped").asBoolean(), "the injected overflow skips step 3");
    double saved = json.readTree(dir.resolve("fp16/checkpoint-4/trainer_state.json").toFile()).get("loss_scale").asDouble();
    assertEquals(scales[4], saved, "checkpoint-4 holds the scale that step 5 used");
    // at a scale that does not overflow, an fp16 step's unscaled update tracks the fp32 step's (SGD: the update is the gradient)
    System.setProperty(io.lorafleet.worker.model.Djl.DTYPE_PROPERTY, "fp16");
    Trainer.Result half;
    try {
      half = Trainer.run(spark, cfg("fp16-sgd", 2, 1, "sgd", false).toBuilder().initialLossScale(256).build(), false);
    } finally {
      System.clearProperty(io.lorafleet.worker.model.Djl.DTYPE_PROPERTY);
    }
    Trainer.Result full = Trainer.run(spark, cfg("fp32-sgd", 2, 1, "sgd", false), false);
    assertEquals(full.losses().get(0), half.losses().get(0), 1e-2 * full.losses().get(0), "loss at step 1");
    float[] init = LoraModel.create(ModelCache.skeleton(model.toString()), cfg("x", 1, 1, "sgd", false).lora()).initialParams(7);
    double err = 0;
    double norm = 0;
    for (int i = 0; i < init.length; i++) {
      double d32 = full.adapter()[i] - init[i];
      double d16 = half.adapter()[i] - init[i];
      err += (d16 - d32) * (d16 - d32);
      norm += d32 * d32;
    }
    assertTrue(norm > 0 && Math.sqrt(err / norm) < 2e-2, "fp16 update differs from fp32's by " + Math.sqrt(err / norm) + " (relative)");
  }

  @Test
  void aModelOnAHadoopUriIsReadRemotelyByTheDriverAndCopiedOncePerNode() throws Exception {
    Path cache = dir.resolve("model-cache");
    System.setProperty("lorafleet.model.cache", cache.toString());
    try {
      TrainConfig local = cfg("uri-local", 2, 2, "adamw", false);
      TrainConfig remote = TrainConfig.builder(model.toUri().toString(), data.toUri().toString(), dir.resolve("uri-remote").toString())
          .tuner(LoraConfig.ofTargetModules(4, 8, "q_proj,v_proj,down_proj")).steps(2).globalBatch(6).microBatch(2).lr(0.05).schedule("constant")
          .clip(0).checkpointEvery(2).keepCheckpoints(3).seed(7).timeoutMs(60_000).maxAttempts(2).evalExamples(0).build();
      float[] expected = Trainer.run(spark, local, false).adapter();
      assertArrayEquals(expected, Trainer.run(spark, remote, false).adapter(), 0f, "the same model, whichever way it is named");
      List<Path> entries;
      try (var s = Files.list(cache)) {
        entries = s.filter(p -> Files.isRegularFile(p.resolve("model.safetensors"))).toList(); // beside it: the tokenizer files' copy
      }
      assertEquals(1, entries.size(), "one copy of the weights per node: " + entries);
      var manifest = new com.fasterxml.jackson.databind.ObjectMapper().readTree(entries.get(0).resolve(NodeCopy.MANIFEST).toFile());
      assertTrue(manifest.toString().contains("model.safetensors") && manifest.toString().contains("sha256"), manifest.toString());
      long stamp = Files.getLastModifiedTime(entries.get(0).resolve(NodeCopy.MANIFEST)).toMillis();
      // a copy cut short (a crash, a full disk) is not trusted: it is copied again
      Path weights = entries.get(0).resolve("model.safetensors");
      Files.write(weights, java.util.Arrays.copyOf(Files.readAllBytes(weights), 100));
      assertArrayEquals(expected, Trainer.run(spark, remote.toBuilder().output(dir.resolve("uri-remote-2").toString()).steps(2).build(), false).adapter(), 0f);
      assertTrue(Files.size(entries.get(0).resolve("model.safetensors")) > 100, "copied again");
      assertTrue(Files.getLastModifiedTime(entries.get(0).resolve(NodeCopy.MANIFEST)).toMillis() >= stamp);
    } finally {
      System.clearProperty("lorafleet.model.cache");
    }
  }

  @Test
  void anOutputThatHoldsARunIsNeverMixedWithAnother() throws Exception {
    Trainer.run(spark, cfg("guard", 2, 2, "adamw", false), false);
    var e = assertThrows(IllegalArgumentException.class, () -> Trainer.run(spark, cfg("guard", 2, 4, "adamw", false), false));
    assertTrue(e.getMessage().contains("already holds") && e.getMessage().contains("checkpoint-2") && e.getMessage().contains("--overwrite"),
        e.getMessage());
    assertEquals(List.of(1, 2), metric(dir.resolve("guard"), "step"), "the refused run wrote nothing");
    Trainer.run(spark, cfg("guard", 2, 3, "adamw", false).toBuilder().resume(false).resumeAuto(false).overwrite(true).build(), false);
    assertEquals(List.of(1, 2, 3), metric(dir.resolve("guard"), "step"), "--overwrite replaced the run");
    assertEquals(List.of("checkpoint-2", "checkpoint-3"), Checkpoints.list(dir.resolve("guard")).stream().map(p -> p.getFileName().toString()).toList(),
        "only the new run's checkpoints (every 2 steps and the last)");
    assertTrue(Files.notExists(dir.resolve("guard/.lorafleet.lock")), "the lock is released");
  }

  @Test
  void aLockKeepsASecondDriverOutAndAStaleOneIsBrokenOnlyByResumeOrOverwrite() throws Exception {
    Trainer.run(spark, cfg("locked", 2, 2, "adamw", false), false);
    Path lock = dir.resolve("locked/.lorafleet.lock");
    String host = java.net.InetAddress.getLocalHost().getHostName();
    // a live owner: this very JVM, as a second driver on the same host would see it
    ProcessHandle me = ProcessHandle.current();
    Files.writeString(lock, "{\"host\": \"" + host + "\", \"pid\": " + me.pid() + ", \"process_started\": \"" + me.info().startInstant().orElseThrow()
        + "\", \"heartbeat_ms\": " + System.currentTimeMillis() + ", \"id\": \"other\"}");
    var live = assertThrows(IllegalStateException.class, () -> Trainer.run(spark, cfg("locked", 2, 4, "adamw", true), false));
    assertTrue(live.getMessage().contains("is locked by a running driver (pid " + me.pid()), live.getMessage());
    // a dead owner on this host: a process that has exited
    Process gone = new ProcessBuilder("true").start();
    gone.waitFor();
    Files.writeString(lock, "{\"host\": \"" + host + "\", \"pid\": " + gone.pid() + ", \"heartbeat_ms\": " + System.currentTimeMillis() + ", \"id\": \"x\"}");
    var stale = assertThrows(IllegalStateException.class, () -> Trainer.run(spark, cfg("locked", 2, 4, "adamw", false).toBuilder().resume(false).resumeAuto(false).overwrite(false).build(),
        false));
    assertTrue(stale.getMessage().contains("holds a stale lock") && stale.getMessage().contains("is gone from this host"), stale.getMessage());
    assertEquals(2, Trainer.run(spark, cfg("locked", 2, 4, "adamw", true), false).losses().size(), "--resume breaks it and continues");
    // an owner on another host whose heartbeat stopped long ago
    Files.writeString(lock, "{\"host\": \"elsewhere\", \"pid\": 1, \"heartbeat_ms\": " + (System.currentTimeMillis() - 3_600_000) + "}");
    Trainer.run(spark, cfg("locked", 2, 2, "adamw", false).toBuilder().resume(false).resumeAuto(false).overwrite(true).build(), false);
    Files.writeString(lock, "{\"host\": \"elsewhere\", \"pid\": 1, \"heartbeat_ms\": " + System.currentTimeMillis() + "}");
    var fresh = assertThrows(IllegalStateException.class, () -> Trainer.run(spark, cfg("locked", 2, 2, "adamw", false).toBuilder().resume(false).resumeAuto(false).overwrite(true).build(),
        false));
    assertTrue(fresh.getMessage().contains("locked by a running driver"), "a recent heartbeat from another host is respected: " + fresh.getMessage());
    Files.delete(lock);
  }

  @Test
  void resumeChecksWhatItContinues() throws Exception {
    var none = assertThrows(IllegalArgumentException.class, () -> Trainer.run(spark, cfg("nothing-yet", 2, 2, "adamw", true), false));
    assertTrue(none.getMessage().contains("holds no valid checkpoint") && none.getMessage().contains("--resume=auto"), none.getMessage());
    assertEquals(2, Trainer.run(spark, cfg("nothing-yet", 2, 2, "adamw", true).toBuilder().resume(true).resumeAuto(true).overwrite(false).build(), false).losses().size(),
        "--resume=auto starts afresh");
    // the same adapter size (q_proj and o_proj are both 32x32) under other targets: refused, not silently loaded
    TrainConfig other = TrainConfig.builder(model.toString(), data.toString(), dir.resolve("nothing-yet").toString())
        .tuner(LoraConfig.ofTargetModules(4, 8, "q_proj,o_proj,down_proj")).steps(4).globalBatch(6).microBatch(2).lr(0.05).schedule("constant")
        .clip(0).checkpointEvery(2).keepCheckpoints(3).seed(7).timeoutMs(60_000).maxAttempts(2).resume(true).evalExamples(0).build();
    var e = assertThrows(IllegalArgumentException.class, () -> Trainer.run(spark, other, false));
    assertTrue(e.getMessage().contains("target_modules is [") && e.getMessage().contains("o_proj"), e.getMessage());
    TrainConfig batch = TrainConfig.builder(model.toString(), data.toString(), dir.resolve("nothing-yet").toString())
        .tuner(LoraConfig.ofTargetModules(4, 8, "q_proj,v_proj,down_proj")).steps(4).globalBatch(4).microBatch(2).lr(0.05).warmup(7).clip(0)
        .checkpointEvery(2).keepCheckpoints(3).seed(9).timeoutMs(60_000).maxAttempts(2).resume(true).evalExamples(0).build();
    e = assertThrows(IllegalArgumentException.class, () -> Trainer.run(spark, batch, false));
    for (String field : List.of("global_batch is 6 in the checkpoint but 4", "seed is 7 in the checkpoint but 9", "schedule is constant", "warmup is 0")) {
      assertTrue(e.getMessage().contains(field), field + " named in: " + e.getMessage());
    }
    assertTrue(Files.readString(dir.resolve("nothing-yet/train_config.yaml")).contains("globalBatch: 6"),
        "a refused --resume leaves the run's own train_config.yaml");
  }

  @Test
  void initAdapterAdoptsTheAdaptersConfigAndRefusesContradictions() throws Exception {
    TrainConfig a32 = TrainConfig.builder(model.toString(), data.toString(), dir.resolve("alpha32").toString())
        .tuner(LoraConfig.ofTargetModules(4, 32, "q_proj,v_proj")).steps(2).globalBatch(6).microBatch(2).lr(0.05).schedule("constant")
        .optimizer("sgd").clip(0).checkpointEvery(2).keepCheckpoints(3).seed(7).timeoutMs(60_000).maxAttempts(2).evalExamples(0).build();
    Trainer.Result first = Trainer.run(spark, a32, false);
    TrainConfig contradicting = TrainConfig.builder(model.toString(), data.toString(), dir.resolve("alpha8").toString())
        .tuner(LoraConfig.ofTargetModules(4, 8, "q_proj,v_proj")).steps(1).globalBatch(6).microBatch(2).lr(0.05).schedule("constant").optimizer("sgd")
        .clip(0).checkpointEvery(2).keepCheckpoints(3).seed(7).timeoutMs(60_000).maxAttempts(2).initAdapter(first.finalAdapter().toString())
        .evalExamples(0).build();
    var e = assertThrows(IllegalArgumentException.class, () -> Trainer.run(spark, contradicting, false));
    assertTrue(e.getMessage().contains("--lora-alpha 8.0 but the adapter has lora_alpha 32.0"), e.getMessage());
    TrainConfig agreeing = TrainConfig.builder(model.toString(), data.toString(), dir.resolve("alpha32-cont").toString())
        .tuner(LoraConfig.ofTargetModules(4, 32, "q_proj,v_proj")).steps(1).globalBatch(6).microBatch(2).lr(0.05).schedule("constant")
        .optimizer("sgd").clip(0).checkpointEvery(2).keepCheckpoints(3).seed(7).timeoutMs(60_000).maxAttempts(2)
        .initAdapter(first.finalAdapter().toString()).evalExamples(0).build();
    Trainer.run(spark, agreeing, false);
    assertEquals(32.0, AdapterFormat.readConfig(dir.resolve("alpha32-cont/adapter")).loraAlpha(), "the continued adapter keeps its alpha");
  }

  @Test
  void aHostilePeerDuringARunChangesNothing() throws Exception {
    int lo;
    try (java.net.ServerSocket probe = new java.net.ServerSocket(0)) {
      lo = probe.getLocalPort();
    }
    Trainer.Result clean = Trainer.run(spark, steady("hostile-clean", 2).toBuilder().output(dir.resolve("hostile-clean").toString()).steps(6).build(), false);
    Hostile attacker = new Hostile("127.0.0.1", lo);
    Thread t = new Thread(attacker, "hostile-peer");
    t.setDaemon(true);
    t.start();
    Trainer.Result attacked;
    try {
      // the server answers (and refuses) connections for the whole stage, so the attacks land during the run, whatever its pace
      attacked = Trainer.run(spark, steady("hostile", 2).toBuilder().output(dir.resolve("hostile").toString()).steps(6).build().toBuilder().gradientPorts(lo + "-" + lo).build(), false);
    } finally {
      attacker.stop();
      t.join(30_000);
    }
    assertTrue(attacker.reachedTheServer() > 0, "the attacker reached the gradient server: " + attacker.log());
    assertArrayEquals(clean.adapter(), attacked.adapter(), 1e-6f);
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
    return TrainConfig.builder(model.toString(), data.toString(), uri).tuner(LoraConfig.ofTargetModules(4, 8, "q_proj,v_proj")).steps(steps)
        .globalBatch(6).microBatch(2).lr(0.05).schedule("constant").clip(0).checkpointEvery(2).seed(7).timeoutMs(60_000).maxAttempts(2).resume(resume)
        .evalExamples(0).build();
  }

  @Test
  void initAdapterContinuesTraining() throws Exception {
    Trainer.Result first = Trainer.run(spark, cfg("cont-a", 2, 2, "sgd", false), false);
    TrainConfig cont = TrainConfig.builder(model.toString(), data.toString(), dir.resolve("cont-b").toString())
        .tuner(LoraConfig.ofTargetModules(4, 8, "q_proj,v_proj,down_proj")).steps(1).globalBatch(6).microBatch(2).lr(0.05).schedule("constant")
        .optimizer("sgd").clip(0).checkpointEvery(2).keepCheckpoints(3).seed(7).timeoutMs(60_000).maxAttempts(2)
        .initAdapter(first.finalAdapter().toString()).evalExamples(0).build();
    Trainer.Result second = Trainer.run(spark, cont, false);
    // continued training starts from the adapter's values with fresh optimizer state and data cursor:
    // its one SGD step is that of the global batch of step 0 applied to the first run's adapter
    try (LanguageModel base = LanguageModel.load(model, Device.cpu(), DataType.FLOAT32)) {
      LoraModel lora = LoraModel.create(base, cfg("x", 1, 1, "sgd", false).lora());
      float[] p = AdapterFormat.read(first.finalAdapter(), base).values().clone();
      StepResult r = TrainStep.run(lora, p, GlobalBatch.microBatches(firstGlobalBatch(), 6), Dropout.Plan.NONE);
      for (int i = 0; i < p.length; i++) {
        p[i] -= 0.05f * (float) (r.gradSum()[i] / r.tokens());
      }
      assertArrayEquals(p, second.adapter(), 1e-6f);
    }
  }

  @Test
  void packedDataTrains() throws Exception {
    Path packed = dir.resolve("packed-data");
    Prepare.run(spark, PrepareOptions.builder(List.of(dir.resolve("d.jsonl").toString()), model.toString(), packed.toString()).maxSeqLen(32)
        .truncation("drop").seed(1).shards(2).maxBadFraction(0).pack(true).build());
    List<Example> rows = Prepare.readSplit(packed.resolve("train"));
    assertTrue(rows.get(0).positionIds().isPresent() && rows.size() < 7, "7 examples packed into fewer rows");
    TrainConfig c = TrainConfig.builder(model.toString(), packed.toString(), dir.resolve("packed-run").toString())
        .tuner(LoraConfig.ofTargetModules(4, 8, "q_proj,v_proj")).steps(3).globalBatch(2).microBatch(1).lr(0.05).schedule("constant").clip(0)
        .checkpointEvery(3).keepCheckpoints(2).seed(7).timeoutMs(60_000).maxAttempts(2).evalExamples(0).build();
    Trainer.Result r = Trainer.run(spark, c, false);
    assertEquals(3, r.losses().size());
    assertTrue(r.losses().stream().allMatch(l -> Double.isFinite(l) && l > 0));
  }

  @Test
  void badConfigsFailBeforeAnySparkWork() {
    var e = assertThrows(IllegalArgumentException.class, () -> Trainer.run(spark, TrainConfig.builder(model.toString(), data.toString(), dir.resolve("bad").toString())
        .tuner(LoraConfig.ofTargetModules(4, 8, "c_attn")).workers(1).steps(1).globalBatch(6).microBatch(2).lr(0.05).schedule("constant")
        .optimizer("sgd").clip(0).checkpointEvery(2).keepCheckpoints(3).seed(7).timeoutMs(60_000).maxAttempts(2).evalExamples(0).build(), false));
    assertTrue(e.getMessage().contains("c_attn") && e.getMessage().contains("q_proj"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> Trainer.run(spark, cfg("bad2", 1, 1, "sgd", false).toBuilder().microBatch(1).workers(6).build(),
        false));
    assertTrue(e.getMessage().contains("exceeds the 3 task slots"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> cfg("bad3", 4, 1, "sgd", false));
    assertTrue(e.getMessage().contains("--workers 4 exceeds the 3 micro-batch slots of a step"), e.getMessage());
    // a dataset tokenized for another model is refused
    Path other = dir.resolve("other-model");
    try {
      ModelDirectory.initModel(other, new TinyModelSpec("llama", 2, 32, 4, 2, 48, 1, 64, false), List.of("x", "y", "z"), 3);
    } catch (java.io.IOException io) {
      throw new java.io.UncheckedIOException(io);
    }
    e = assertThrows(IllegalArgumentException.class, () -> Trainer.run(spark, TrainConfig.builder(other.toString(), data.toString(), dir.resolve("bad4").toString())
        .tuner(LoraConfig.ofTargetModules(4, 8, "q_proj")).workers(1).steps(1).globalBatch(6).microBatch(2).lr(0.05).schedule("constant")
        .optimizer("sgd").clip(0).checkpointEvery(2).keepCheckpoints(3).seed(7).timeoutMs(60_000).maxAttempts(2).evalExamples(0).build(), false));
    assertTrue(e.getMessage().contains("was tokenized with tokenizer") && e.getMessage().contains("prepare the data again"), e.getMessage());
  }
}
