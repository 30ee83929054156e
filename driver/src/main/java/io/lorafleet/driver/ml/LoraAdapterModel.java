package io.lorafleet.driver.ml;

import ai.djl.Device;
import io.lorafleet.datasets.prepare.PrepareOptions;
import io.lorafleet.datasets.prepare.RecordFormat;
import io.lorafleet.datasets.prepare.Tokenize;
import io.lorafleet.driver.executor.ModelCache;
import io.lorafleet.worker.generate.Generator;
import io.lorafleet.worker.generate.Sampling;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.model.Dropout;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.quant.Quantization;
import io.lorafleet.worker.tokenizer.Tokenizer;
import io.lorafleet.worker.train.StepResult;
import io.lorafleet.worker.train.TrainStep;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.spark.api.java.function.MapPartitionsFunction;
import org.apache.spark.ml.Model;
import org.apache.spark.ml.param.IntParam;
import org.apache.spark.ml.param.Param;
import org.apache.spark.ml.param.ParamMap;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;

/**
 * A trained adapter over its base as a Spark ML Transformer. With {@code targetCol} unset it adds
 * {@code outputCol} (default "generated"): the greedy continuation of {@code inputCol}, up to
 * {@code maxNewTokens}. With {@code targetCol} set it adds {@code outputCol} (then default "loss"):
 * the mean per-token loss of the target after the input, as training computes it. Over a sequence
 * classifier (RoBERTa, DeBERTa-v2) it adds {@code outputCol} (default "prediction"): each text's
 * predicted class name (id2label), or its regressed value. Each executor loads the base once and
 * the adapter once per task.
 */
public final class LoraAdapterModel extends Model<LoraAdapterModel> {
  private final String uid;
  private final Param<String> baseModel;
  private final Param<String> adapter;
  private final Param<String> inputCol;
  private final Param<String> targetCol;
  private final Param<String> outputCol;
  private final IntParam maxNewTokens;
  private final IntParam maxSeqLen;

  public LoraAdapterModel(String uid) {
    this.uid = uid; // before the Params, which record their parent's uid
    baseModel = new Param<>(this, "baseModel", "the base model directory the adapter was trained over");
    adapter = new Param<>(this, "adapter", "the PEFT adapter directory");
    inputCol = new Param<>(this, "inputCol", "the column of prompts (contexts)");
    targetCol = new Param<>(this, "targetCol", "when set, the column of targets whose loss is computed instead of a generation");
    outputCol = new Param<>(this, "outputCol", "the column added (default: generated, or loss with targetCol)");
    maxNewTokens = new IntParam(this, "maxNewTokens", "tokens generated per row");
    maxSeqLen = new IntParam(this, "maxSeqLen", "with targetCol: longest tokenized example (longer contexts are truncated, as prepare does)");
    setDefault(inputCol, "context");
    setDefault(targetCol, "");
    setDefault(outputCol, "");
    setDefault(maxNewTokens, 32);
    setDefault(maxSeqLen, 512);
  }

  public LoraAdapterModel(String uid, String base, String adapterDir) {
    this(uid);
    set(baseModel, base);
    set(adapter, adapterDir);
  }

  // Spark ML finds a stage's Params through public no-argument methods that return them
  public Param<String> baseModel() {
    return baseModel;
  }

  public Param<String> adapter() {
    return adapter;
  }

  public Param<String> inputCol() {
    return inputCol;
  }

  public Param<String> targetCol() {
    return targetCol;
  }

  public Param<String> outputCol() {
    return outputCol;
  }

  public IntParam maxNewTokens() {
    return maxNewTokens;
  }

  public IntParam maxSeqLen() {
    return maxSeqLen;
  }

  /**
   * The run's last validation loss (its trainer's evalEvery), as its run_summary.json beside the
   * adapter records it; empty when the run evaluated none. What a grid's models are selected by.
   */
  public java.util.OptionalDouble validationLoss() {
    java.nio.file.Path summary = java.nio.file.Path.of((String) getOrDefault(adapter)).resolveSibling("run_summary.json");
    try {
      if (!java.nio.file.Files.isRegularFile(summary)) {
        return java.util.OptionalDouble.empty();
      }
      var n = new com.fasterxml.jackson.databind.ObjectMapper().readTree(summary.toFile()).path("val_loss");
      return n.isNumber() ? java.util.OptionalDouble.of(n.asDouble()) : java.util.OptionalDouble.empty();
    } catch (java.io.IOException e) {
      throw new java.io.UncheckedIOException(summary + ": " + e.getMessage(), e);
    }
  }

  @Override
  public String uid() {
    return uid;
  }

  @SuppressWarnings("unchecked")
  private <T> T value(Param<?> p) {
    return (T) getOrDefault(p);
  }

  private boolean lossMode() {
    return !((String) value(targetCol)).isEmpty();
  }

  private String output() {
    String o = value(outputCol);
    return !o.isEmpty() ? o : encoder().isPresent() ? "prediction" : lossMode() ? "loss" : "generated";
  }

  /** The base's config when it is a sequence classifier (read on the driver). */
  private Optional<io.lorafleet.worker.model.ModelConfig> encoder() {
    var c = ModelCache.skeleton(value(baseModel), io.lorafleet.datasets.fs.HadoopConf.current(), AdapterFormat.labels(Path.of((String) value(adapter)))).config();
    return c.arch().encoder() ? Optional.of(c) : Optional.empty();
  }

  @Override
  public StructType transformSchema(StructType schema) {
    List<String> names = Arrays.asList(schema.fieldNames());
    List<Param<String>> needed = lossMode() ? List.of(inputCol, targetCol) : List.of(inputCol);
    for (Param<String> c : needed) {
      String name = value(c);
      if (!names.contains(name) || !schema.apply(name).dataType().equals(DataTypes.StringType)) {
        throw new IllegalArgumentException(c.name() + ": expected a string column '" + name + "' but the dataset's columns are " + schema.simpleString());
      }
    }
    if (names.contains(output())) {
      throw new IllegalArgumentException("outputCol: the dataset already has a column '" + output() + "'");
    }
    var enc = encoder();
    if (enc.isPresent() && lossMode()) {
      throw new IllegalArgumentException("targetCol: " + value(baseModel) + " is a " + enc.get().modelType() + " sequence classifier, which predicts "
          + "a label per text; leave targetCol unset (lorafleet eval reports the loss and the metrics)");
    }
    if (enc.isPresent()) {
      return schema.add(output(), enc.get().regression() ? DataTypes.DoubleType : DataTypes.StringType, false);
    }
    return schema.add(output(), lossMode() ? DataTypes.DoubleType : DataTypes.StringType, false);
  }

  @Override
  public Dataset<Row> transform(Dataset<?> dataset) {
    StructType outSchema = transformSchema(dataset.schema());
    String base = value(baseModel);
    Optional<io.lorafleet.worker.model.ModelConfig> classifier = encoder();
    if (classifier.isPresent()) {
      return classify(dataset, outSchema, classifier.get().regression());
    }
    String adapterDir = value(adapter);
    int in = Arrays.asList(dataset.schema().fieldNames()).indexOf((String) value(inputCol));
    int target = lossMode() ? Arrays.asList(dataset.schema().fieldNames()).indexOf((String) value(targetCol)) : -1;
    int maxNew = value(maxNewTokens);
    int seqLen = value(maxSeqLen);
    MapPartitionsFunction<Row, Row> f = rows -> {
      LanguageModel m = ModelCache.model(base, Device.cpu(), Quantization.NONE);
      AdapterFormat.Loaded a = AdapterFormat.read(Path.of(adapterDir), m);
      Tokenizer tok = Tokenize.tokenizer(base);
      PrepareOptions o = PrepareOptions.builder(List.of("dataset"), base, "unused").maxSeqLen(seqLen).shards(1).maxBadFraction(1).build();
      List<Row> out = new ArrayList<>();
      while (rows.hasNext()) {
        Row row = rows.next();
        if (target < 0) {
          int[] gen = Generator.generate(m, Optional.of(a), tok.encodePrompt(row.getString(in)),
              new Sampling(maxNew, 0, 1.0, 0), tok.eos());
          out.add(appended(row, tok.decode(gen)));
        } else {
          var ex = Tokenize.record(tok, Map.of("context", row.getString(in), "target", row.getString(target)), o, m.config().vocabSize()).example();
          StepResult r = TrainStep.evaluate(a.model(), a.values(), List.of(Batch.of(new int[][] {ex.inputIds()}, new int[][] {ex.labels()})));
          out.add(appended(row, r.tokens() == 0 ? Double.NaN : r.lossSum() / r.tokens()));
        }
      }
      return out.iterator();
    };
    return dataset.toDF().mapPartitions(f, Encoders.row(outSchema));
  }

  /** {@code row}'s values with {@code v} after them: the row with the output column. */
  private static Row appended(Row row, Object v) {
    Object[] values = new Object[row.length() + 1];
    for (int i = 0; i < row.length(); i++) {
      values[i] = row.get(i);
    }
    values[row.length()] = v;
    return RowFactory.create(values);
  }

  /** A sequence classifier's predictions, 16 rows to a forward pass. */
  private Dataset<Row> classify(Dataset<?> dataset, StructType outSchema, boolean regression) {
    String base = value(baseModel);
    String adapterDir = value(adapter);
    int in = Arrays.asList(dataset.schema().fieldNames()).indexOf((String) value(inputCol));
    int seqLen = value(maxSeqLen);
    MapPartitionsFunction<Row, Row> f = rows -> {
      // the labels the adapter's head was trained for, which it records
      LanguageModel m = ModelCache.model(base, Device.cpu(), io.lorafleet.datasets.fs.HadoopConf.current(), Quantization.NONE,
          AdapterFormat.labels(Path.of(adapterDir)));
      AdapterFormat.Loaded a = AdapterFormat.read(Path.of(adapterDir), m);
      Tokenizer tok = Tokenize.tokenizer(base);
      List<String> names = m.config().labelNames();
      List<Row> out = new ArrayList<>();
      List<Row> chunk = new ArrayList<>();
      while (rows.hasNext() || !chunk.isEmpty()) {
        if (rows.hasNext() && chunk.size() < 16) {
          chunk.add(rows.next());
          continue;
        }
        int[][] ids = chunk.stream().map(r -> tok.encodeForClassification(r.getString(in), Optional.empty(), seqLen).ids()).toArray(int[][]::new);
        float[] predicted;
        try (ai.djl.ndarray.NDManager s = m.manager().newSubManager()) {
          predicted = io.lorafleet.worker.train.SequenceLoss.predictions(m.forward(a.model().bind(s, a.values(), false, Dropout.OFF).context(),
              Batch.classification(ids, new float[ids.length])));
        }
        for (int k = 0; k < chunk.size(); k++) {
          out.add(appended(chunk.get(k), regression ? (Object) (double) predicted[k] : names.get((int) predicted[k])));
        }
        chunk.clear();
      }
      return out.iterator();
    };
    return dataset.toDF().mapPartitions(f, Encoders.row(outSchema));
  }

  @Override
  public LoraAdapterModel copy(ParamMap extra) {
    return copyValues(new LoraAdapterModel(uid), extra).setParent(parent());
  }
}
