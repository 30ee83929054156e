package io.lorafleet.driver.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.lorafleet.datasets.arrow.Example;
import io.lorafleet.datasets.arrow.ShardReader;
import io.lorafleet.datasets.prepare.Prepare;
import io.lorafleet.datasets.prepare.PrepareOptions;
import io.lorafleet.datasets.prepare.RecordFormat;
import io.lorafleet.driver.eval.ClassificationMetrics;
import io.lorafleet.driver.eval.RunEvaluation;
import io.lorafleet.driver.eval.Scores;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.HfDirectory;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.TinyModelSpec;
import io.lorafleet.worker.quant.Quantization;
import io.lorafleet.worker.safetensors.SafetensorsReader;
import io.lorafleet.worker.tokenizer.Tokenizer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Random;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Encoder sequence classification end to end on Spark local[2], as the LoRA paper's GLUE runs:
 * prepare --format classification (text pairs, labels by name), train on 2 workers, evaluate every
 * checkpoint, the averaged and the final adapter, merge. The task is learnable but not from the
 * first token alone: a pair is "positive" when its second text holds "great", so the head must
 * attend across the separator.
 */
class EncoderClassificationIT {
  static SparkSession spark;
  @TempDir static Path dir;
  static final List<String> FILLER = List.of("the", "a", "cat", "dog", "sat", "on", "mat", "ran", "far", "near", "big", "small", "red", "blue");
  static final List<String> WORDS = new ArrayList<>(FILLER);

  static {
    WORDS.addAll(List.of("great", "awful"));
  }

  @BeforeAll
  static void setUp() throws Exception {
    spark = SparkSession.builder().master("local[2]").appName("encoder-it").config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1").getOrCreate();
    Random rng = new Random(1);
    StringBuilder cls = new StringBuilder();
    StringBuilder reg = new StringBuilder();
    for (int i = 0; i < 240; i++) {
      boolean pos = rng.nextDouble() < 0.35; // a majority class of about 65%
      String first = sentence(rng, Optional.empty());
      String second = sentence(rng, Optional.of(pos ? "great" : "awful"));
      cls.append(String.format("{\"text\": \"%s\", \"text_pair\": \"%s\", \"label\": \"%s\"}%n", first, second, pos ? "positive" : "negative"));
      int greats = rng.nextInt(4);
      String text = first;
      for (int g = 0; g < greats; g++) {
        text += " great";
      }
      reg.append(String.format("{\"text\": \"%s\", \"label\": %s}%n", text, greats * 0.5 - 0.3)); // a value to regress
    }
    Files.writeString(dir.resolve("pairs.jsonl"), cls);
    Files.writeString(dir.resolve("values.jsonl"), reg);
  }

  static String sentence(Random rng, Optional<String> insert) {
    List<String> w = new ArrayList<>();
    for (int k = 0, n = 3 + rng.nextInt(5); k < n; k++) {
      w.add(FILLER.get(rng.nextInt(FILLER.size())));
    }
    insert.ifPresent(x -> w.add(rng.nextInt(w.size() + 1), x));
    return String.join(" ", w);
  }

  @AfterAll
  static void tearDown() {
    spark.stop();
  }

  static Path model(String name, String arch, List<String> labels) throws Exception {
    Path m = dir.resolve(name);
    if (!Files.isDirectory(m)) {
      ModelDirectory.initModel(m, new TinyModelSpec(arch, 2, 32, 4, 4, 64, 1, 64, false), WORDS, 3, labels);
    }
    return m;
  }

  static Path prepare(Path model, String input, String name) throws Exception {
    Path data = dir.resolve(name);
    if (!Files.isDirectory(data)) {
      Prepare.run(spark, PrepareOptions.builder(List.of(dir.resolve(input).toString()), model.toString(), data.toString())
          .format(RecordFormat.CLASSIFICATION).maxSeqLen(64).truncation("drop").seed(1).valFraction(0.25).shards(2).maxBadFraction(0).build());
    }
    return data;
  }

  static TrainConfig cfg(Path model, Path data, String out, int workers, int steps) {
    return TrainConfig.builder(model.toString(), data.toString(), dir.resolve(out).toString())
        .tuner(LoraConfig.ofTargetModules(8, 16, "query,key,value,dense")).workers(workers).steps(steps).globalBatch(16).microBatch(8).lr(3e-3)
        .schedule("constant").clip(0).checkpointEvery(50).keepCheckpoints(3).seed(7).timeoutMs(60_000).maxAttempts(2).evalExamples(0).build();
  }

  @Test
  void robertaPairsPrepareTrainBeatTheMajorityBaselineAverageAndMerge() throws Exception {
    Path model = model("roberta", "roberta", List.of("negative", "positive"));
    Path data = prepare(model, "pairs.jsonl", "roberta-data");
    // the rows are what the tokenizer's post-processor makes of the pair: <s> A </s></s> B </s>, and the label by name
    List<Example> rows = ShardReader.read(Files.list(data.resolve("train")).filter(p -> p.toString().endsWith(".arrow")).sorted().findFirst().orElseThrow());
    try (Tokenizer tok = Tokenizer.load(model)) {
      int[] ids = rows.get(0).inputIds();
      assertEquals(1, ids[0]);
      assertEquals(2, ids[ids.length - 1]);
      long seps = java.util.Arrays.stream(ids).filter(x -> x == 2).count();
      assertEquals(3, seps, "RobertaProcessing puts </s></s> between the texts and </s> at the end: " + tok.decode(ids));
      assertTrue(rows.stream().allMatch(e -> e.label().isPresent()));
    }
    Trainer.Result r = Trainer.run(spark, cfg(model, data, "roberta-run", 2, 200).toBuilder().seed(1).averageLast(3).build(), false);
    Path run = dir.resolve("roberta-run");
    var conf = new ObjectMapper().readTree(run.resolve("adapter/adapter_config.json").toFile());
    assertEquals("SEQ_CLS", conf.get("task_type").asText());
    assertEquals("[\"classifier\"]", conf.get("modules_to_save").toString());
    var evals = RunEvaluation.candidates(spark, model.toString(), Quantization.NONE, RunEvaluation.runCandidates(run.toString(), spark.sparkContext().hadoopConfiguration()),
        data.resolve("validation").toString(), 2, 1000);
    Scores base = evals.get(0).scores();
    double majority = majority(base.gold());
    assertTrue(majority >= 0.5 && majority < 0.8, "a majority class of " + majority);
    String table = RunEvaluation.write(dir.resolve("roberta-eval"), evals);
    for (RunEvaluation.Row row : evals) {
      ClassificationMetrics m = row.scores().metrics();
      assertEquals(base.gold().length, row.scores().examples(), row.label());
      if (row.label().equals("adapter") || row.label().equals("averaged")) {
        assertTrue(m.accuracy() > majority + 0.15, row.label() + ": accuracy " + m.accuracy() + " against the majority baseline " + majority + "\n" + table);
        assertTrue(m.matthews() > 0.5 && m.f1() > 0.5, row.label() + ": " + m);
      }
    }
    assertTrue(Files.isDirectory(run.resolve("averaged")), "average-last wrote averaged/");
    assertTrue(table.contains("accuracy") && table.contains("matthews"), table);
    var json = new ObjectMapper().readTree(dir.resolve("roberta-eval/eval.json").toFile());
    assertTrue(json.get(0).get("pearson").isNull(), "correlations apply to regression only");

    // merge: the merged classifier (head included) scores as the adapter does
    Path merged = dir.resolve("roberta-merged");
    try (LanguageModel m = LanguageModel.load(model, Device.cpu(), DataType.FLOAT32)) {
      var a = AdapterFormat.read(r.finalAdapter(), m);
      a.model().merge(a.values());
      ModelDirectory.export(merged, m, model);
    }
    var mergedEval = RunEvaluation.candidates(spark, merged.toString(), Quantization.NONE, List.of(new RunEvaluation.Row("base", 0, Optional.empty(),
        Scores.ZERO)), data.resolve("validation").toString(), 2, 1000).get(0).scores();
    Scores adapter = evals.get(evals.size() - 1).scores();
    assertEquals(adapter.loss(), mergedEval.loss(), 1e-4 * Math.abs(adapter.loss()) + 1e-6);
    assertEquals(adapter.metrics(), mergedEval.metrics());
    assertArrayEquals(adapter.gold(), mergedEval.gold(), "examples in split order, whichever task finishes first");
    assertArrayEquals(adapter.predicted(), mergedEval.predicted());
    assertTrue(SafetensorsReader.open(merged.resolve(HfDirectory.SAFETENSORS)).info("classifier.out_proj.weight").isPresent());
  }

  static double majority(float[] gold) {
    long ones = 0;
    for (float g : gold) {
      ones += g == 1 ? 1 : 0;
    }
    return Math.max(ones, gold.length - ones) / (double) gold.length;
  }

  /** DeBERTa-v3 (shared position keys, log buckets) on 2 workers makes the 1-worker adapter, head and pooler included. */
  @Test
  void debertaTrainsOnTwoWorkersAsOnOne() throws Exception {
    Path model = model("deberta", "deberta-v2", List.of("negative", "positive"));
    Path data = prepare(model, "pairs.jsonl", "deberta-data");
    float[][] byWorkers = new float[2][];
    Trainer.Result last = null;
    for (int w = 1; w <= 2; w++) {
      last = Trainer.run(spark, cfg(model, data, "deberta" + w, w, 4).toBuilder().tuner(LoraConfig.ofTargetModules(8, 16, "query_proj,key_proj,value_proj")).build(), false);
      byWorkers[w - 1] = last.adapter();
    }
    assertArrayEquals(byWorkers[0], byWorkers[1], 1e-6f, "2 workers make the 1-worker update");
    var st = SafetensorsReader.open(last.finalAdapter().resolve(AdapterFormat.WEIGHTS));
    for (String k : List.of("base_model.model.pooler.dense.weight", "base_model.model.classifier.weight",
        "base_model.model.deberta.encoder.layer.1.attention.self.key_proj.lora_B.weight")) {
      assertTrue(st.tensors().containsKey(k), k + " in " + st.tensors().keySet());
    }
    try (LanguageModel base = LanguageModel.load(model, Device.cpu(), DataType.FLOAT32)) {
      var loaded = AdapterFormat.read(last.finalAdapter(), base);
      assertArrayEquals(byWorkers[1], loaded.values());
      assertFalse(java.util.Arrays.equals(loaded.model().initialParams(7), byWorkers[1]), "training moved the adapter");
    }
  }

  /**
   * BERT on text pairs: the shards hold the tokenizer's token types (1 for the second text and its
   * [SEP]); 2 workers train the 1-worker adapter with the pooler trained too (modules_to_save
   * pooler,classifier), and the adapter holds it.
   */
  @Test
  void bertPairsCarryTokenTypesAndTrainThePoolerWhenAsked() throws Exception {
    Path model = model("bert", "bert", List.of("negative", "positive"));
    Path data = prepare(model, "pairs.jsonl", "bert-data");
    var rows = io.lorafleet.datasets.arrow.SplitReader.open(data.resolve("train").toString(), new org.apache.hadoop.conf.Configuration(),
        io.lorafleet.datasets.arrow.TokenLimits.NONE, 1);
    var first = rows.row(0);
    int sep = first.inputIds()[first.inputIds().length - 1];
    int firstSep = java.util.stream.IntStream.range(0, first.inputIds().length).filter(i -> first.inputIds()[i] == sep).findFirst().orElseThrow();
    for (int i = 0; i < first.inputIds().length; i++) {
      assertEquals(i <= firstSep ? 0 : 1, first.tokenTypes()[i], "token " + i + " of " + java.util.Arrays.toString(first.inputIds()));
    }
    float[][] byWorkers = new float[2][];
    Trainer.Result last = null;
    for (int w = 1; w <= 2; w++) {
      TrainConfig c = cfg(model, data, "bert" + w, w, 4).toBuilder().tuner(LoraConfig.ofTargetModules(8, 16, "query,value")
          .withModulesToSave(List.of("pooler", "classifier"))).build();
      last = Trainer.run(spark, c, false);
      byWorkers[w - 1] = last.adapter();
      // honest counters: each step's input tokens are its rows' own (no padding), whichever worker read them; its examples are its rows
      var order = new io.lorafleet.driver.executor.EpochOrder(rows.blockRows(), c.batching().seed(), c.batching().shuffleWindow());
      List<String> lines = Files.readAllLines(dir.resolve("bert" + w).resolve("metrics.jsonl"));
      assertEquals(4, lines.size());
      for (int step = 0; step < 4; step++) {
        long tokens = io.lorafleet.driver.executor.GlobalBatch.slice(rows, order, step, 16).stream().mapToLong(e -> e.inputIds().length).sum();
        var m = new com.fasterxml.jackson.databind.ObjectMapper().readTree(lines.get(step));
        assertEquals(tokens, m.get("input_tokens").asLong(), w + " workers, step " + step + ": " + m);
        assertEquals(16, m.get("examples").asLong(), m.toString());
        assertFalse(m.has("tokens"), "a classifier's rows are examples, not tokens: " + m);
      }
    }
    assertArrayEquals(byWorkers[0], byWorkers[1], 1e-6f, "2 workers make the 1-worker update");
    var st = SafetensorsReader.open(last.finalAdapter().resolve(AdapterFormat.WEIGHTS));
    for (String k : List.of("base_model.model.bert.pooler.dense.weight", "base_model.model.classifier.weight",
        "base_model.model.bert.encoder.layer.1.attention.self.value.lora_B.weight")) {
      assertTrue(st.tensors().containsKey(k), k + " in " + st.tensors().keySet());
    }
  }

  /** num_labels 1: squared error, and Pearson and Spearman against the values. */
  @Test
  void debertaRegressionLearnsTheValues() throws Exception {
    Path model = model("deberta-reg", "deberta-v2", List.of("score"));
    Path data = prepare(model, "values.jsonl", "deberta-reg-data");
    Trainer.Result r = Trainer.run(spark, cfg(model, data, "deberta-reg-run", 2, 120).toBuilder().tuner(LoraConfig.ofTargetModules(8, 16, "query_proj,value_proj,dense")).build(), false);
    var evals = RunEvaluation.candidates(spark, model.toString(), Quantization.NONE, List.of(new RunEvaluation.Row("base", 0, Optional.empty(), Scores.ZERO),
        new RunEvaluation.Row("adapter", -1, Optional.of(r.finalAdapter().toString()), Scores.ZERO)), data.resolve("validation").toString(), 2, 1000);
    ClassificationMetrics trained = evals.get(1).scores().metrics();
    assertTrue(Double.isNaN(trained.accuracy()));
    assertTrue(trained.pearson() > 0.9 && trained.spearman() > 0.8, "trained: " + trained);
    assertTrue(evals.get(1).scores().loss() < evals.get(0).scores().loss() / 4, "MSE " + evals.get(1).scores().loss() + " vs base " + evals.get(0).scores().loss());
  }

  /**
   * A classifier chosen by Matthews correlation during the run: the live adapter and its EMA are
   * scored on the workers by eval's own code, and eval --run on the same validation split gives
   * best/ the best_metric that trainer_state.json records.
   */
  @Test
  void aClassifierKeepsItsBestByMatthewsAsEvalScoresIt() throws Exception {
    Path model = model("roberta", "roberta", List.of("negative", "positive"));
    Path data = prepare(model, "pairs.jsonl", "roberta-data");
    TrainConfig c = cfg(model, data, "roberta-best", 2, 160).toBuilder().seed(1).checkpointEvery(40).evalEvery(40).evalExamples(1000).emaDecay(0.8)
        .best(TrainConfig.Selection.of("eval_matthews", null, true, 0, 0)).build();
    assertTrue(c.eval().best().greaterIsBetter(), "transformers: greater is better for a name not ending in loss");
    Trainer.run(spark, c, false);
    Path run = dir.resolve("roberta-best");
    var state = new com.fasterxml.jackson.databind.ObjectMapper().readTree(run.resolve("checkpoint-160").resolve("trainer_state.json").toFile());
    var evals = RunEvaluation.candidates(spark, model.toString(), Quantization.NONE, List.of(new RunEvaluation.Row("best", -1,
        Optional.of(run.resolve(Trainer.BEST).toString()), Scores.ZERO)), data.resolve("validation").toString(), 2, 1000);
    assertEquals(evals.get(0).scores().metrics().matthews(), state.get("best_metric").asDouble(), 1e-12, state.toString());
    assertTrue(state.get("best_metric").asDouble() > 0, "the classifier learned something: " + state);
  }
}
