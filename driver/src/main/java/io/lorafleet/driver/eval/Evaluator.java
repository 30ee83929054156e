package io.lorafleet.driver.eval;

import ai.djl.Device;
import io.lorafleet.datasets.arrow.Example;
import io.lorafleet.datasets.arrow.SplitReader;
import io.lorafleet.datasets.arrow.TokenLimits;
import io.lorafleet.driver.train.GlobalBatch;
import io.lorafleet.driver.train.ModelCache;
import io.lorafleet.worker.generate.Generator;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.model.CausalLM;
import io.lorafleet.worker.train.FrozenModel;
import io.lorafleet.worker.train.TrainStep;
import io.lorafleet.worker.train.Trainable;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import java.util.stream.IntStream;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.SparkSession;

/**
 * Evaluation on a prepared split: token-weighted loss (and perplexity) on target tokens, and exact
 * match of greedy generations: the prompt is every token before the first labelled one, the
 * expected answer every token from there (EOS included), and a generation matches only if it
 * reproduces the answer token for token.
 */
public final class Evaluator {
  private Evaluator() {}

  /** Evaluates examples on this JVM. {@code adapter} empty means the base (or merged model) alone. */
  public static Scores local(CausalLM base, Optional<AdapterFormat.Loaded> adapter, List<Example> examples, int batch) {
    Trainable t = adapter.<Trainable>map(AdapterFormat.Loaded::model).orElseGet(() -> new FrozenModel(base));
    float[] values = adapter.map(AdapterFormat.Loaded::values).orElse(new float[0]);
    var loss = TrainStep.evaluate(t, values, GlobalBatch.microBatches(examples, batch));
    List<int[]> prompts = new ArrayList<>();
    List<int[]> answers = new ArrayList<>();
    for (Example e : examples) {
      int first = firstLabel(e);
      if (first > 0) {
        prompts.add(Arrays.copyOf(e.inputIds(), first));
        answers.add(Arrays.copyOfRange(e.inputIds(), first, e.inputIds().length));
      }
    }
    long exact = 0;
    // Greedy generation in batches; a row stops at its answer's length or at the answer's last token
    // (EOS), so every generation is compared with its answer token for token.
    for (int from = 0; from < prompts.size(); from += batch) {
      List<int[]> ps = prompts.subList(from, Math.min(prompts.size(), from + batch));
      List<int[]> as = answers.subList(from, from + ps.size());
      int[][] gen = Generator.greedyBatch(base, Optional.of(t), values, ps.toArray(int[][]::new),
          as.stream().mapToInt(a -> a.length).toArray(), as.stream().mapToInt(a -> a[a.length - 1]).toArray());
      for (int k = 0; k < gen.length; k++) {
        exact += Arrays.equals(gen[k], as.get(k)) ? 1 : 0;
      }
    }
    return new Scores(loss.lossSum(), loss.tokens(), exact, examples.size());
  }

  static int firstLabel(Example e) {
    for (int i = 0; i < e.labels().length; i++) {
      if (e.labels()[i] != -100) {
        return i;
      }
    }
    return -1;
  }

  /**
   * Distributed evaluation: the split's examples are spread over {@code partitions} Spark tasks;
   * each executor loads the base once and the adapter per task.
   */
  public static Scores distributed(SparkSession spark, String model, io.lorafleet.worker.quant.Quantization quantize, Optional<String> adapter, String splitDir, int partitions, int limit) {
    JavaSparkContext jsc = JavaSparkContext.fromSparkContext(spark.sparkContext());
    // the driver reads the shard indexes only; each task reads its own rows' batches
    var conf = new org.apache.spark.util.SerializableConfiguration(jsc.hadoopConfiguration());
    long rows;
    try {
      rows = SplitReader.open(splitDir, conf.value(), TokenLimits.NONE, 1).rows();
    } catch (java.io.IOException e) {
      throw new java.io.UncheckedIOException(splitDir + ": " + e.getMessage(), e);
    }
    int n = (int) Math.min(limit, rows);
    jsc.setJobDescription("lorafleet eval: " + adapter.orElse("base " + model) + " on " + n + " examples of " + splitDir);
    List<Integer> idx = IntStream.range(0, n).boxed().toList();
    String adapterPath = adapter.orElse("");
    return jsc.parallelize(idx, Math.max(1, Math.min(partitions, n))).mapPartitions(it -> {
      CausalLM base = ModelCache.model(model, Device.cpu(), conf.value(), quantize);
      SplitReader split = SplitReader.open(splitDir, conf.value(), new TokenLimits(base.config().vocabSize(), base.config().maxPositions()), 4);
      List<Example> mine = new ArrayList<>();
      while (it.hasNext()) {
        mine.add(split.row(it.next()));
      }
      Optional<AdapterFormat.Loaded> a = adapterPath.isEmpty() ? Optional.empty() : Optional.of(AdapterFormat.read(Path.of(adapterPath), base));
      return List.of(local(base, a, mine, 16)).iterator();
    }).reduce(Scores::plus);
  }
}
