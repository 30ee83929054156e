package io.lorafleet.driver.ml;

import io.lorafleet.datasets.prepare.Prepare;
import io.lorafleet.datasets.prepare.PrepareOptions;
import io.lorafleet.datasets.prepare.RecordFormat;
import io.lorafleet.driver.train.TrainConfig;
import io.lorafleet.driver.train.Trainer;
import io.lorafleet.worker.lora.LoraConfig;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.List;
import java.util.Map;
import org.apache.spark.ml.Estimator;
import org.apache.spark.ml.param.BooleanParam;
import org.apache.spark.ml.param.DoubleParam;
import org.apache.spark.ml.param.IntParam;
import org.apache.spark.ml.param.Param;
import org.apache.spark.ml.param.ParamMap;
import org.apache.spark.ml.util.Identifiable$;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.SaveMode;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;

/**
 * A Spark ML Estimator that trains a LoRA adapter on a {@code Dataset<Row>} of context-target
 * records. Its Params carry the CLI's names (camelCase) and defaults, and are validated as the CLI
 * validates them, by {@link TrainConfig}, before any job runs. {@code fit} writes the two columns as
 * Parquet under {@code workDir} (default {@code out + ".data"}), runs {@code prepare} on them, then
 * the distributed trainer on the session's executors, and returns a {@link LoraAdapterModel} over
 * the final adapter in {@code out}. Over a sequence classifier (RoBERTa, DeBERTa-v2) the context
 * column holds the texts and the target column the labels (class names from id2label, ids, or
 * values for regression), prepared as {@code prepare --format classification} prepares them.
 *
 * <p>{@code fit(dataset, paramMaps)} (a {@code ParamGridBuilder} grid) trains every map in one
 * multi-run job on one prepared copy of the data: one base load per executor, one barrier stage,
 * each map's run in {@code out/runs/m<i>_<its params>/}, and returns one model per map, in order.
 * CrossValidator and TrainValidationSplit call {@code fit(dataset, paramMap)} once per map (and per
 * fold), in parallel when their parallelism is above 1, so they cannot use this path; a second fit
 * while one runs in the same driver is refused, since two barrier stages would wait for each other's
 * slots and write one {@code out}.
 */
public final class LoraTrainer extends Estimator<LoraAdapterModel> {
  private final String uid;
  private final Param<String> model;
  private final Param<String> out;
  private final Param<String> workDir;
  private final Param<String> contextCol;
  private final Param<String> targetCol;
  private final Param<String> targetModules;
  private final IntParam r;
  private final DoubleParam loraAlpha;
  private final DoubleParam loraDropout;
  private final BooleanParam modelDropout;
  private final IntParam workers;
  private final IntParam steps;
  private final IntParam globalBatch;
  private final IntParam microBatch;
  private final DoubleParam lr;
  private final Param<String> schedule;
  private final IntParam warmup;
  private final IntParam checkpointEvery;
  private final IntParam maxSeqLen;
  private final DoubleParam valFraction;
  private final IntParam seed;
  private final Param<String> labels;
  private final IntParam evalEvery;
  /** The fit this driver is running, if any: a second one at once is refused. */
  private static final java.util.concurrent.atomic.AtomicReference<String> RUNNING = new java.util.concurrent.atomic.AtomicReference<>();

  public LoraTrainer() {
    this(Identifiable$.MODULE$.randomUID("loraTrainer"));
  }

  public LoraTrainer(String uid) {
    this.uid = uid; // before the Params, which record their parent's uid
    model = new Param<>(this, "model", "base model: an HF model directory or a Hadoop URI");
    out = new Param<>(this, "out", "run directory: checkpoints, metrics.jsonl, adapter/ (refused when it holds a run)");
    workDir = new Param<>(this, "workDir", "where the records and the prepared shards are written (default: out + \".data\")");
    contextCol = new Param<>(this, "contextCol", "the column of contexts (no loss falls on them)");
    targetCol = new Param<>(this, "targetCol", "the column of targets (the loss falls on them)");
    targetModules = new Param<>(this, "targetModules", "modules to adapt: names (comma-separated), all-linear, or one regex");
    r = new IntParam(this, "r", "LoRA rank");
    loraAlpha = new DoubleParam(this, "loraAlpha", "LoRA scaling numerator: the update is loraAlpha/r times B·A");
    loraDropout = new DoubleParam(this, "loraDropout", "dropout on the adapter's input");
    modelDropout = new BooleanParam(this, "modelDropout", "the base model's own dropouts in training, as transformers' train mode (false: --model-dropout off)");
    workers = new IntParam(this, "workers", "training tasks, one per GPU or CPU slot");
    steps = new IntParam(this, "steps", "optimizer steps");
    globalBatch = new IntParam(this, "globalBatch", "examples per optimizer step, over all workers (a multiple of workers)");
    microBatch = new IntParam(this, "microBatch", "examples per forward/backward pass on a worker");
    lr = new DoubleParam(this, "lr", "peak learning rate");
    schedule = new Param<>(this, "schedule", "learning-rate schedule, as transformers defines it");
    warmup = new IntParam(this, "warmup", "warm-up steps");
    checkpointEvery = new IntParam(this, "checkpointEvery", "steps between checkpoints");
    maxSeqLen = new IntParam(this, "maxSeqLen", "longest tokenized example (longer contexts are truncated)");
    valFraction = new DoubleParam(this, "valFraction", "fraction of the records held out as the validation split");
    seed = new IntParam(this, "seed", "seed of the adapter init, the data order and the split");
    labels = new Param<>(this, "labels", "a classifier's class names by id, comma-separated, instead of the base's config.json id2label "
        + "(transformers' from_pretrained(id2label=...)); recorded in the adapter. Empty: the base's");
    evalEvery = new IntParam(this, "evalEvery", "steps between validation losses on the held-out split (valFraction > 0; 0: none); the "
        + "model's validationLoss() is the last one");
    setDefault(evalEvery, 0);
    setDefault(workDir, "");
    setDefault(contextCol, "context");
    setDefault(targetCol, "target");
    setDefault(targetModules, "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj");
    setDefault(r, 8);
    setDefault(loraAlpha, 16.0);
    setDefault(loraDropout, 0.0);
    setDefault(modelDropout, true);
    setDefault(workers, 2);
    setDefault(steps, 100);
    setDefault(globalBatch, 8);
    setDefault(microBatch, 4);
    setDefault(lr, 1e-3);
    setDefault(schedule, "cosine");
    setDefault(warmup, 0);
    setDefault(checkpointEvery, 10);
    setDefault(maxSeqLen, 512);
    setDefault(valFraction, 0.0);
    setDefault(seed, 0);
    setDefault(labels, "");
  }

  // Spark ML finds a stage's Params through public no-argument methods that return them
  public Param<String> model() {
    return model;
  }

  public Param<String> out() {
    return out;
  }

  public Param<String> workDir() {
    return workDir;
  }

  public Param<String> contextCol() {
    return contextCol;
  }

  public Param<String> targetCol() {
    return targetCol;
  }

  public Param<String> targetModules() {
    return targetModules;
  }

  public Param<String> labels() {
    return labels;
  }

  public LoraTrainer setLabels(String v) {
    return (LoraTrainer) set(labels, v);
  }

  /** The labels Param as the CLI's --labels reads it. */
  private io.lorafleet.worker.model.Labels labelsValue() {
    String v = value(labels);
    return io.lorafleet.worker.model.Labels.of(java.util.Arrays.stream(v.split(",")).map(String::trim).filter(x -> !x.isEmpty()).toList(), null, false);
  }

  public IntParam r() {
    return r;
  }

  public DoubleParam loraAlpha() {
    return loraAlpha;
  }

  public DoubleParam loraDropout() {
    return loraDropout;
  }

  public BooleanParam modelDropout() {
    return modelDropout;
  }

  public IntParam workers() {
    return workers;
  }

  public IntParam steps() {
    return steps;
  }

  public IntParam globalBatch() {
    return globalBatch;
  }

  public IntParam microBatch() {
    return microBatch;
  }

  public DoubleParam lr() {
    return lr;
  }

  public Param<String> schedule() {
    return schedule;
  }

  public IntParam warmup() {
    return warmup;
  }

  public IntParam checkpointEvery() {
    return checkpointEvery;
  }

  public IntParam maxSeqLen() {
    return maxSeqLen;
  }

  public DoubleParam valFraction() {
    return valFraction;
  }

  public IntParam seed() {
    return seed;
  }

  public IntParam evalEvery() {
    return evalEvery;
  }

  @Override
  public String uid() {
    return uid;
  }

  @SuppressWarnings("unchecked")
  private <T> T value(Param<?> p) {
    return (T) getOrDefault(p);
  }

  /** The job these Params describe, validated as the CLI validates it (throws before any Spark work). */
  TrainConfig config(String data) {
    if (!isDefined(model) || !isDefined(out)) {
      throw new IllegalArgumentException("LoraTrainer needs model and out set");
    }
    LoraConfig tuner = LoraConfig.ofTargetModules(value(r), value(loraAlpha), value(targetModules)).withDropout(value(loraDropout));
    return TrainConfig.builder(value(model), data, value(out)).labels(labelsValue()).tuner(tuner).workers(value(workers)).steps(value(steps))
        .globalBatch(value(globalBatch)).microBatch(value(microBatch)).seed((int) value(seed)).lr(value(lr)).warmup(value(warmup))
        .schedule(value(schedule)).checkpointEvery(value(checkpointEvery)).evalEvery(value(evalEvery)).evalExamples((int) value(evalEvery) > 0 ? 1000 : 0)
        .modelDropout(value(modelDropout)).build();
  }

  String resolvedWorkDir() {
    String w = value(workDir);
    return w.isEmpty() ? value(out) + ".data" : w;
  }

  /** Whether the base is a sequence classifier (read from its config.json on the driver). */
  private boolean encoderBase() {
    return isDefined(model) && io.lorafleet.driver.executor.ModelCache.skeleton(value(model)).config().arch().encoder();
  }

  @Override
  public StructType transformSchema(StructType schema) {
    boolean encoder = encoderBase();
    for (Param<String> c : List.of(contextCol, targetCol)) {
      String name = value(c);
      if (!java.util.Arrays.asList(schema.fieldNames()).contains(name)) {
        throw new IllegalArgumentException(c.name() + ": the dataset has no column '" + name + "'; its columns are "
            + java.util.Arrays.toString(schema.fieldNames()));
      }
      var type = schema.apply(name).dataType();
      boolean label = encoder && c == targetCol; // a class name or id, or a value to regress
      if (!type.equals(DataTypes.StringType) && !(label && type instanceof org.apache.spark.sql.types.NumericType)) {
        throw new IllegalArgumentException(c.name() + ": column '" + name + "' is " + type.simpleString() + ", expected string"
            + (label ? " or a number (the label)" : ""));
      }
    }
    return schema;
  }

  @Override
  public LoraAdapterModel fit(Dataset<?> dataset) {
    transformSchema(dataset.schema());
    String work = resolvedWorkDir();
    TrainConfig cfg = config(work + "/prepared");
    try (Running ignored = running("fit")) {
      prepare(dataset, work);
      Trainer.Result res = Trainer.run(dataset.sparkSession(), cfg, false);
      LoraAdapterModel m = new LoraAdapterModel(uid, value(model), res.finalAdapter().toString());
      m.setParent(this);
      return m;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /**
   * Every map of {@code paramMaps} in one multi-run job: the data prepared once, every run on one
   * base and one barrier stage, and one model per map, in order. Maps may set the tuner, optimizer,
   * schedule, seed and steps of their run; what prepares the data (columns, maxSeqLen, valFraction)
   * and what the job shares (model, workers, globalBatch, microBatch, modelDropout) must agree.
   */
  @Override
  public scala.collection.immutable.Seq<LoraAdapterModel> fit(Dataset<?> dataset, scala.collection.immutable.Seq<ParamMap> paramMaps) {
    return scala.jdk.javaapi.CollectionConverters.asScala(fit(dataset, scala.jdk.javaapi.CollectionConverters.asJava(paramMaps).toArray(ParamMap[]::new)))
        .toList();
  }

  /** As {@link #fit(Dataset, scala.collection.immutable.Seq)}, for Java: a ParamGridBuilder's {@code build()} as it is. */
  public List<LoraAdapterModel> fit(Dataset<?> dataset, ParamMap[] paramMaps) {
    if (paramMaps.length == 0) {
      return List.of();
    }
    transformSchema(dataset.schema());
    String work = resolvedWorkDir();
    String root = ((String) value(out)).replaceAll("/+$", "");
    List<Trainer.Named> runs = new java.util.ArrayList<>();
    for (int i = 0; i < paramMaps.length; i++) {
      LoraTrainer one = copy(paramMaps[i]);
      for (Param<?> shared : List.of(contextCol, targetCol, maxSeqLen, valFraction, labels, workDir)) {
        if (!java.util.Objects.equals(one.getOrDefault(shared), getOrDefault(shared))) {
          throw new IllegalArgumentException("param map " + i + " sets " + shared.name() + " " + one.getOrDefault(shared) + " but the estimator has "
              + getOrDefault(shared) + "; the maps of one fit share the prepared data, so set it on the estimator");
        }
      }
      String name = runName(i, paramMaps[i]);
      one.set(one.out, root + "/runs/" + name);
      runs.add(new Trainer.Named(name, one.config(work + "/prepared")));
    }
    io.lorafleet.driver.train.MultiRun.checkShared(runs); // before any Spark work
    try (Running ignored = running("fit over " + paramMaps.length + " param maps")) {
      prepare(dataset, work);
      var spark = dataset.sparkSession();
      List<Trainer.Result> results = Trainer.run(spark, runs, io.lorafleet.driver.train.Pruning.Settings.NONE, false);
      io.lorafleet.driver.train.MultiRun.writeTable(root, spark.sparkContext().hadoopConfiguration(), runs, results);
      List<String> failed = new java.util.ArrayList<>();
      List<LoraAdapterModel> models = new java.util.ArrayList<>();
      for (int i = 0; i < results.size(); i++) {
        if (results.get(i).status().equals("diverged")) {
          failed.add("param map " + i + " (" + runs.get(i).name() + "): " + results.get(i).why());
        }
        LoraAdapterModel m = new LoraAdapterModel(uid + "_" + i, value(model), results.get(i).finalAdapter().toString());
        m.setParent(this);
        models.add(m);
      }
      if (!failed.isEmpty()) {
        throw new IllegalStateException(String.join("; ", failed) + "; the other maps' adapters are in " + root + "/runs (see runs.json)");
      }
      return models;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** A run's directory name for map {@code i}: m<i>, then the map's params as name=value (a directory name: other characters become '-'). */
  static String runName(int i, ParamMap map) {
    StringBuilder b = new StringBuilder("m").append(i);
    List<org.apache.spark.ml.param.ParamPair<?>> pairs = new java.util.ArrayList<>(scala.jdk.javaapi.CollectionConverters.asJava(map.toSeq()));
    pairs.sort(java.util.Comparator.comparing(p -> p.param().name()));
    for (var p : pairs) {
      b.append('_').append(p.param().name()).append('=').append(String.valueOf(p.value()));
    }
    String name = b.toString().replaceAll("[^A-Za-z0-9_.=-]", "-");
    return name.length() > 100 ? name.substring(0, 100) : name;
  }

  /** Writes the two columns as Parquet under {@code work} and prepares them. */
  private void prepare(Dataset<?> dataset, String work) throws IOException {
    boolean encoder = encoderBase();
    var spark = dataset.sparkSession();
    dataset.select(dataset.col(value(contextCol)).as(encoder ? "text" : "context"), dataset.col(value(targetCol)).as(encoder ? "label" : "target"))
        .write().mode(SaveMode.Overwrite).parquet(work + "/records");
    RecordFormat format = encoder ? RecordFormat.CLASSIFICATION : RecordFormat.CONTEXT_TARGET;
    Prepare.run(spark, PrepareOptions.builder(List.of(work + "/records"), value(model), work + "/prepared").inputType("parquet").format(format)
        .maxSeqLen((int) value(maxSeqLen)).seed((int) value(seed)).valFraction((double) value(valFraction))
        .shards(Math.max(1, (int) value(workers))).maxBadFraction(1.0).overwrite(true).labels(labelsValue()).build());
  }

  /** This driver's fit, held until it ends; a second one at once is refused by name. */
  private record Running() implements AutoCloseable {
    @Override
    public void close() {
      RUNNING.set(null);
    }
  }

  private Running running(String what) {
    if (!RUNNING.compareAndSet(null, uid + " " + what)) {
      throw new IllegalStateException("LoraTrainer: " + RUNNING.get() + " is running in this driver; fits run one at a time (their barrier stages "
          + "would wait for each other's task slots). CrossValidator and TrainValidationSplit need parallelism 1; to train a grid at once, call "
          + "fit(dataset, paramMaps)");
    }
    return new Running();
  }

  @Override
  public LoraTrainer copy(ParamMap extra) {
    return defaultCopy(extra);
  }
}
