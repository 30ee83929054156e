package io.lorafleet.driver.ml;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.datasets.prepare.Prepare;
import io.lorafleet.datasets.prepare.PrepareOptions;
import io.lorafleet.datasets.prepare.RecordFormat;
import io.lorafleet.datasets.prepare.Tokenize;
import io.lorafleet.driver.TinyJob;
import io.lorafleet.worker.flat.Trainable;
import io.lorafleet.worker.generate.Generator;
import io.lorafleet.worker.generate.Sampling;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.tokenizer.Tokenizer;
import io.lorafleet.worker.train.StepResult;
import io.lorafleet.worker.train.TrainStep;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The Spark library API on local[2], from Dataset<Row>s built here: prepare as a transformation, LoraTrainer.fit and LoraAdapterModel.transform. */
class MlApiIT {
  @TempDir static Path dir;
  static SparkSession spark;
  static String model;

  @BeforeAll
  static void setUp() throws Exception {
    spark = SparkSession.builder().master("local[2]").appName("ml-api-it").config("spark.ui.enabled", "false").config("spark.driver.host", "127.0.0.1")
        .getOrCreate();
    TinyJob.write(dir, 6, 0);
    model = dir.resolve("model").toString();
  }

  @AfterAll
  static void tearDown() {
    spark.stop();
  }

  static Dataset<Row> records(int n, boolean withBad) {
    List<Row> rows = new ArrayList<>();
    List<String> w = TinyJob.WORDS;
    for (int i = 0; i < n; i++) {
      rows.add(RowFactory.create(w.get(i % 4) + " =", w.get((i + 1) % 4)));
    }
    if (withBad) {
      rows.add(RowFactory.create("a =", null));
    }
    StructType schema = new StructType().add("context", DataTypes.StringType, false).add("target", DataTypes.StringType, true);
    return spark.createDataFrame(rows, schema);
  }

  /**
   * Over a sequence classifier the estimator takes texts and label names, and the model predicts a
   * class name per text: a learnable task (the label word is in the text) well above the majority.
   */
  @Test
  void aClassifierFitsOnTextsAndLabelsAndPredictsClassNames() throws Exception {
    Path roberta = dir.resolve("roberta");
    List<String> filler = List.of("the", "a", "cat", "dog", "sat", "on", "mat", "ran", "far", "near");
    List<String> words = new ArrayList<>(filler);
    words.addAll(List.of("great", "awful"));
    io.lorafleet.worker.model.ModelDirectory.initModel(roberta, new io.lorafleet.worker.model.TinyModelSpec("roberta", 2, 32, 4, 4, 64, 1, 64, false),
        words, 3, List.of("negative", "positive"));
    java.util.Random rng = new java.util.Random(2);
    List<Row> rows = new ArrayList<>();
    for (int i = 0; i < 160; i++) {
      boolean pos = rng.nextDouble() < 0.35;
      List<String> w = new ArrayList<>();
      for (int k = 0; k < 3 + rng.nextInt(5); k++) {
        w.add(filler.get(rng.nextInt(filler.size())));
      }
      w.add(rng.nextInt(w.size() + 1), pos ? "great" : "awful");
      rows.add(RowFactory.create(String.join(" ", w), pos ? "positive" : "negative"));
    }
    Dataset<Row> df = spark.createDataFrame(rows, new StructType().add("text", DataTypes.StringType, false).add("label", DataTypes.StringType, false));
    LoraTrainer trainer = new LoraTrainer();
    trainer.set(trainer.model(), roberta.toString());
    trainer.set(trainer.out(), dir.resolve("roberta-run").toString());
    trainer.set(trainer.contextCol(), "text");
    trainer.set(trainer.targetCol(), "label");
    trainer.set(trainer.targetModules(), "query,key,value,dense");
    trainer.set(trainer.workers(), 2);
    trainer.set(trainer.steps(), 200);
    trainer.set(trainer.globalBatch(), 16);
    trainer.set(trainer.microBatch(), 8);
    trainer.set(trainer.lr(), 3e-3);
    trainer.set(trainer.schedule(), "constant");
    trainer.set(trainer.checkpointEvery(), 100);
    trainer.set(trainer.seed(), 1);
    LoraAdapterModel m = trainer.fit(df);
    m.set(m.inputCol(), "text");
    List<Row> out = m.transform(df).collectAsList();
    assertEquals(rows.size(), out.size());
    long right = out.stream().filter(r -> r.getString(1).equals(r.getString(2))).count();
    long positives = rows.stream().filter(r -> r.getString(1).equals("positive")).count();
    double majority = Math.max(positives, rows.size() - positives) / (double) rows.size();
    assertTrue(out.stream().allMatch(r -> List.of("negative", "positive").contains(r.getString(2))), "predictions are id2label's names");
    assertTrue((double) right / rows.size() > majority + 0.15, "accuracy " + (double) right / rows.size() + " against the majority " + majority);
    m.set(m.targetCol(), "label");
    var e = assertThrows(IllegalArgumentException.class, () -> m.transform(df));
    assertTrue(e.getMessage().contains("sequence classifier"), e.getMessage());
  }

  /** The estimator's labels Param, on a base saved without a head or id2label: the model predicts those names, read from the adapter. */
  @Test
  void theLabelsParamNamesTheClassesOfAHeadlessBase() throws Exception {
    Path headed = dir.resolve("bert-headed");
    List<String> words = List.of("the", "cat", "sat", "great", "awful");
    io.lorafleet.worker.model.ModelDirectory.initModel(headed, new io.lorafleet.worker.model.TinyModelSpec("bert", 1, 16, 2, 2, 32, 1, 32, false), words, 3,
        List.of());
    Path bare = dir.resolve("bert-bare");
    java.nio.file.Files.createDirectories(bare);
    for (String f : List.of("tokenizer.json", "tokenizer_config.json")) {
      java.nio.file.Files.copy(headed.resolve(f), bare.resolve(f));
    }
    var cfg = (com.fasterxml.jackson.databind.node.ObjectNode) new com.fasterxml.jackson.databind.ObjectMapper().readTree(headed.resolve("config.json").toFile());
    cfg.remove(List.of("id2label", "label2id"));
    java.nio.file.Files.writeString(bare.resolve("config.json"), cfg.toString());
    var r = io.lorafleet.worker.safetensors.SafetensorsReader.open(headed.resolve("model.safetensors"));
    java.util.Map<String, io.lorafleet.worker.safetensors.Tensor> body = new java.util.LinkedHashMap<>();
    r.tensors().keySet().stream().filter(k -> !k.startsWith("classifier.")).forEach(k -> body.put(k, r.read(k)));
    io.lorafleet.worker.safetensors.SafetensorsWriter.write(bare.resolve("model.safetensors"), body, java.util.Map.of("format", "pt"));
    List<Row> rows = new ArrayList<>();
    for (int i = 0; i < 16; i++) {
      rows.add(RowFactory.create("the cat sat " + (i % 2 == 0 ? "great" : "awful"), i % 2 == 0 ? "great" : "awful"));
    }
    Dataset<Row> df = spark.createDataFrame(rows, new StructType().add("text", DataTypes.StringType, false).add("label", DataTypes.StringType, false));
    LoraTrainer trainer = new LoraTrainer();
    trainer.set(trainer.model(), bare.toString());
    trainer.set(trainer.out(), dir.resolve("labels-run").toString());
    trainer.set(trainer.contextCol(), "text");
    trainer.set(trainer.targetCol(), "label");
    trainer.set(trainer.targetModules(), "query,value");
    trainer.setLabels("awful,great");
    trainer.set(trainer.workers(), 1);
    trainer.set(trainer.steps(), 2);
    trainer.set(trainer.globalBatch(), 4);
    trainer.set(trainer.microBatch(), 4);
    trainer.set(trainer.checkpointEvery(), 2);
    LoraAdapterModel m = trainer.fit(df);
    m.set(m.inputCol(), "text");
    List<Row> out = m.transform(df).collectAsList();
    assertTrue(out.stream().allMatch(x -> List.of("awful", "great").contains(x.getString(2))), "predictions are the Param's names: " + out);
  }

  @Test
  void prepareIsATransformationFromRowsToExamplesAndAQuarantine() {
    PrepareOptions o = PrepareOptions.builder(List.of("dataset"), model, "unused").maxSeqLen(16).truncation("drop").valFraction(0.25).shards(1)
        .maxBadFraction(1).build();
    Prepare.Transformed t = Prepare.transform(records(12, true), o);
    List<Row> ex = t.examples().collectAsList();
    assertEquals(12, ex.size());
    assertEquals(List.of("input_ids", "labels", "split"), List.of(t.examples().columns()));
    var want = Tokenize.record(Tokenize.tokenizer(model), Map.of("context", "a =", "target", "b"), o, Tokenize.vocabSize(model)).example();
    assertArrayEquals(want.inputIds(), ex.get(0).getList(0).stream().mapToInt(x -> (Integer) x).toArray(), "as prepare tokenizes a record");
    assertArrayEquals(want.labels(), ex.get(0).getList(1).stream().mapToInt(x -> (Integer) x).toArray(), "the loss on the target only");
    assertTrue(ex.stream().anyMatch(r -> r.getString(2).equals("validation")) && ex.stream().anyMatch(r -> r.getString(2).equals("train")));
    List<Row> bad = t.quarantine().collectAsList();
    assertEquals(1, bad.size());
    assertEquals(13L, bad.get(0).getLong(0));
    assertTrue(bad.get(0).getString(1).contains("target"), bad.get(0).getString(1));
  }

  @Test
  void loraTrainerFitsOnADatasetAndItsModelAddsGenerationsAndLosses() throws Exception {
    Dataset<Row> df = records(16, false);
    LoraTrainer trainer = new LoraTrainer();
    trainer.set(trainer.model(), model);
    trainer.set(trainer.out(), dir.resolve("run").toString());
    trainer.set(trainer.workers(), 2);
    trainer.set(trainer.steps(), 3);
    trainer.set(trainer.globalBatch(), 4);
    trainer.set(trainer.microBatch(), 2);
    trainer.set(trainer.lr(), 0.01);
    trainer.set(trainer.targetModules(), "q_proj,v_proj");
    trainer.set(trainer.maxSeqLen(), 16);
    // validated before any job: the schema, then the Params as the CLI validates them
    var e = assertThrows(IllegalArgumentException.class, () -> trainer.fit(df.drop("target")));
    assertTrue(e.getMessage().contains("targetCol") && e.getMessage().contains("'target'"), e.getMessage());
    LoraTrainer zero = trainer.copy(new org.apache.spark.ml.param.ParamMap());
    zero.set(zero.r(), 0);
    e = assertThrows(IllegalArgumentException.class, () -> zero.fit(df));
    assertTrue(e.getMessage().contains("r must be > 0"), e.getMessage());
    assertFalse(Files.exists(dir.resolve("run.data")), "nothing was written");

    LoraAdapterModel m = trainer.fit(df);
    Path adapter = dir.resolve("run/adapter");
    assertEquals(adapter.toString(), m.getOrDefault(m.adapter()));
    m.set(m.maxNewTokens(), 3);
    List<Row> gen = m.transform(df.select("context")).collectAsList();
    assertEquals(16, gen.size());
    m.set(m.targetCol(), "target");
    List<Row> losses = m.transform(df).collectAsList();
    try (LanguageModel base = LanguageModel.load(Path.of(model), Device.cpu(), DataType.FLOAT32); Tokenizer tok = Tokenizer.load(Path.of(model))) {
      AdapterFormat.Loaded a = AdapterFormat.read(adapter, base);
      for (int i = 0; i < 4; i++) {
        int[] g = Generator.generate(base, Optional.of((Trainable) a.model()), a.values(), tok.encodePrompt(gen.get(i).getString(0)),
            new Sampling(3, 0, 1.0, 0), tok.eos());
        assertEquals(tok.decode(g), gen.get(i).getString(1), "row " + i + " generates as lorafleet generate does");
        PrepareOptions o = PrepareOptions.builder(List.of("dataset"), model, "unused").maxSeqLen(16).shards(1).maxBadFraction(1).build();
        var ex = Tokenize.record(Tokenize.tokenizer(model), Map.of("context", losses.get(i).getString(0), "target", losses.get(i).getString(1)), o,
            base.config().vocabSize()).example();
        StepResult r = TrainStep.evaluate(a.model(), a.values(), List.of(Batch.of(new int[][] {ex.inputIds()}, new int[][] {ex.labels()})));
        assertEquals(r.lossSum() / r.tokens(), losses.get(i).getDouble(2), 1e-12, "row " + i + "'s loss");
      }
    }
    assertThrows(IllegalArgumentException.class, () -> m.transform(df.select("target")), "no context column: refused before any job");
  }

  /**
   * A ParamGridBuilder grid costs one job: every map's run in out/runs/, the models in the maps'
   * order, each the adapter its map's plain train writes on the same prepared data (to 1e-6 of its
   * norm: its rows shared each pass with the other maps'), and each with its validation loss to select by. A second fit while one runs in this driver is refused by name.
   */
  @Test
  void aParamGridFitsInOneJobAndEachModelIsWhatItsOwnFitGives() throws Exception {
    Dataset<Row> df = records(24, false);
    LoraTrainer trainer = new LoraTrainer();
    trainer.set(trainer.model(), model);
    trainer.set(trainer.out(), dir.resolve("grid").toString());
    trainer.set(trainer.workers(), 2);
    trainer.set(trainer.steps(), 4);
    trainer.set(trainer.globalBatch(), 4);
    trainer.set(trainer.microBatch(), 2);
    trainer.set(trainer.targetModules(), "q_proj,v_proj");
    trainer.set(trainer.maxSeqLen(), 16);
    trainer.set(trainer.valFraction(), 0.25);
    trainer.set(trainer.evalEvery(), 2);
    org.apache.spark.ml.param.ParamMap[] grid = new org.apache.spark.ml.tuning.ParamGridBuilder().addGrid(trainer.lr(), new double[] {0.01, 0.05})
        .addGrid(trainer.r(), new int[] {2, 4}).build();
    List<LoraAdapterModel> models = trainer.fit(df, grid);
    assertEquals(4, models.size());
    var json = new com.fasterxml.jackson.databind.ObjectMapper();
    LoraAdapterModel best = null;
    for (int i = 0; i < 4; i++) {
      Path adapter = Path.of(models.get(i).getOrDefault(models.get(i).adapter()));
      assertTrue(adapter.startsWith(dir.resolve("grid/runs")), adapter.toString());
      assertEquals((int) grid[i].apply(trainer.r()), json.readTree(adapter.resolve("adapter_config.json").toFile()).get("r").asInt(), "map " + i);
      assertTrue(models.get(i).validationLoss().isPresent(), "map " + i + " has a validation loss to select by");
      if (best == null || models.get(i).validationLoss().getAsDouble() < best.validationLoss().getAsDouble()) {
        best = models.get(i);
      }
    }
    assertTrue(best != null);
    assertEquals(4, json.readTree(dir.resolve("grid/runs.json").toFile()).size());
    // map 3 trained alone on the grid's prepared data (a single fit prepares its own copy, whose split depends on the records' file names)
    var alone = io.lorafleet.driver.train.Trainer.run(spark, trainer.copy(grid[3]).config(dir.resolve("grid.data/prepared").toString()).toBuilder()
        .output(dir.resolve("single3").toString()).build(), false);
    io.lorafleet.driver.AdapterValues.assertClose(alone.finalAdapter(), Path.of(models.get(3).getOrDefault(models.get(3).adapter())), 1e-6,
        "map 3 in the grid's job (its rows in mixed batches) and alone");
    // a fit while another runs here: the first pauses at its first step (a fault plan), the second is refused
    LoraTrainer first = trainer.copy(new org.apache.spark.ml.param.ParamMap());
    first.set(first.out(), dir.resolve("paused").toString());
    var pausing = java.util.concurrent.CompletableFuture.runAsync(() -> {
      spark.sparkContext().setLocalProperty(io.lorafleet.driver.executor.FaultPlan.CONF, "pause@0");
      try {
        first.fit(df);
      } finally {
        spark.sparkContext().setLocalProperty(io.lorafleet.driver.executor.FaultPlan.CONF, null);
      }
    });
    Path paused = dir.resolve("paused/_paused-0");
    while (!Files.exists(paused) && !pausing.isDone()) {
      Thread.sleep(50);
    }
    LoraTrainer second = trainer.copy(new org.apache.spark.ml.param.ParamMap());
    second.set(second.out(), dir.resolve("second").toString());
    var refused = assertThrows(IllegalStateException.class, () -> second.fit(df));
    assertTrue(refused.getMessage().contains("fits run one at a time") && refused.getMessage().contains("fit(dataset, paramMaps)"), refused.getMessage());
    Files.createFile(dir.resolve("paused/_resume-0"));
    pausing.get();
    assertTrue(Files.isDirectory(dir.resolve("paused/adapter")), "the first fit finished");
  }
}
