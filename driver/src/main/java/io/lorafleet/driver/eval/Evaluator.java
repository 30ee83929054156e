package io.lorafleet.driver.eval;

import io.lorafleet.datasets.fs.NodeCopy;
import ai.djl.Device;
import io.lorafleet.datasets.arrow.Example;
import io.lorafleet.datasets.arrow.SplitReader;
import io.lorafleet.datasets.arrow.TokenLimits;
import io.lorafleet.driver.executor.GlobalBatch;
import io.lorafleet.driver.executor.ModelCache;
import io.lorafleet.worker.flat.Trainable;
import io.lorafleet.worker.generate.Generator;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.model.Dropout;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.train.FrozenModel;
import io.lorafleet.worker.train.TrainStep;
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
  public static Scores local(LanguageModel base, Optional<AdapterFormat.Loaded> adapter, List<Example> examples, int batch) {
    return local(base, adapter, examples, batch, true);
  }

  /** As {@link #local(LanguageModel, Optional, List, int)}; without {@code generate} a causal LM's exact matches are not counted (0). */
  static Scores local(LanguageModel base, Optional<AdapterFormat.Loaded> adapter, List<Example> examples, int batch, boolean generate) {
    if (base.config().arch().encoder()) {
      return classify(base, adapter, examples, batch);
    }
    Trainable t = adapter.<Trainable>map(AdapterFormat.Loaded::model).orElseGet(() -> new FrozenModel(base));
    float[] values = adapter.map(AdapterFormat.Loaded::values).orElse(new float[0]);
    var loss = TrainStep.evaluate(t, values, GlobalBatch.microBatches(examples, batch));
    List<int[]> prompts = new ArrayList<>();
    List<int[]> answers = new ArrayList<>();
    if (generate) {
      promptsAndAnswers(examples, prompts, answers);
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

  /**
   * Evaluates several candidates (adapters, or empty for the base) over one pass of the examples:
   * each micro-batch is repeated once per candidate into one batch of mixed adapters
   * ({@link io.lorafleet.worker.lora.MixedDelta}), so the data is read and batched once and every
   * candidate's rows share the forward passes; greedy generations are mixed the same way. Scores
   * are per candidate, in order. Candidates that cannot join a mixed batch (DoRA, VeRA, AdaLoRA,
   * trained biases) are evaluated on their own, by {@link #local}.
   */
  public static List<Scores> localMany(LanguageModel base, List<Optional<AdapterFormat.Loaded>> candidates, List<Example> examples, int batch) {
    return localMany(base, candidates, examples, batch, true);
  }

  /**
   * As {@link #localMany(LanguageModel, List, List, int)}; without {@code generate} a causal LM's
   * exact matches are not counted (0): a training run's evaluations that choose by loss.
   */
  public static List<Scores> localMany(LanguageModel base, List<Optional<AdapterFormat.Loaded>> candidates, List<Example> examples, int batch,
      boolean generate) {
    if (base.config().arch().encoder()) { // a classifier's pass is one forward per batch: each candidate on its own
      return candidates.stream().map(c -> classify(base, c, examples, batch)).toList();
    }
    List<AdapterFormat.Loaded> mixed = new ArrayList<>();
    int[] slot = new int[candidates.size()]; // index into mixed, -1 for the base, -2 for one evaluated alone
    for (int c = 0; c < candidates.size(); c++) {
      Optional<AdapterFormat.Loaded> a = candidates.get(c);
      slot[c] = -1;
      if (a.isPresent() && io.lorafleet.worker.lora.MixedDelta.unmixable(a.get().model()).isPresent()) {
        slot[c] = -2;
      } else if (a.isPresent()) {
        slot[c] = mixed.size();
        mixed.add(a.get());
      }
    }
    List<Integer> together = new ArrayList<>();
    for (int c = 0; c < candidates.size(); c++) {
      if (slot[c] != -2) {
        together.add(c);
      }
    }
    double[] loss = new double[candidates.size()];
    long[] tokens = new long[candidates.size()];
    long[] exact = new long[candidates.size()];
    int n = together.size();
    int[] rowSlots = together.stream().mapToInt(c -> slot[c]).toArray();
    for (io.lorafleet.worker.model.Batch b : n == 0 ? List.<io.lorafleet.worker.model.Batch>of() : GlobalBatch.microBatches(examples, batch)) {
      int k = b.size(); // (no candidate mixes, DoRA's say: each is scored alone below)
      int[] rowAdapter = new int[n * k];
      for (int j = 0; j < n; j++) {
        Arrays.fill(rowAdapter, j * k, (j + 1) * k, rowSlots[j]);
      }
      try (ai.djl.ndarray.NDManager s = base.manager().newSubManager()) {
        ai.djl.ndarray.NDArray logits = base.forward(io.lorafleet.worker.lora.MixedDelta.bind(s, mixed, rowAdapter), repeat(b, n));
        for (int j = 0; j < n; j++) {
          ai.djl.ndarray.NDArray part = logits.get(new ai.djl.ndarray.index.NDIndex("{}:{}", j * k, (j + 1) * k));
          loss[together.get(j)] += io.lorafleet.worker.train.TokenLoss.value(io.lorafleet.worker.train.TokenLoss.sum(s, part, b));
          tokens[together.get(j)] += b.targetTokens();
        }
      }
    }
    List<int[]> prompts = new ArrayList<>();
    List<int[]> answers = new ArrayList<>();
    if (generate && n > 0) {
      promptsAndAnswers(examples, prompts, answers);
    }
    for (int from = 0; from < prompts.size(); from += batch) {
      int k = Math.min(prompts.size(), from + batch) - from;
      int[][] ps = new int[n * k][];
      int[] mn = new int[n * k];
      int[] st = new int[n * k];
      int[] ra = new int[n * k];
      for (int j = 0; j < n; j++) {
        for (int i = 0; i < k; i++) {
          int[] ans = answers.get(from + i);
          ps[j * k + i] = prompts.get(from + i);
          mn[j * k + i] = ans.length;
          st[j * k + i] = ans[ans.length - 1];
          ra[j * k + i] = rowSlots[j];
        }
      }
      int[][] gen = Generator.greedyMixed(base, mixed, ra, ps, mn, st);
      for (int j = 0; j < n; j++) {
        for (int i = 0; i < k; i++) {
          exact[together.get(j)] += Arrays.equals(gen[j * k + i], answers.get(from + i)) ? 1 : 0;
        }
      }
    }
    List<Scores> out = new ArrayList<>();
    for (int c = 0; c < candidates.size(); c++) {
      out.add(slot[c] == -2 ? local(base, candidates.get(c), examples, batch, generate) : new Scores(loss[c], tokens[c], exact[c], examples.size()));
    }
    return out;
  }

  /**
   * A sequence classifier on labelled examples: the loss summed over examples (cross-entropy, or
   * squared error for regression) and each example's prediction (arg-max class, or value) beside
   * its gold label, for {@link ClassificationMetrics}.
   */
  static Scores classify(LanguageModel base, Optional<AdapterFormat.Loaded> adapter, List<Example> examples, int batch) {
    Trainable t = adapter.<Trainable>map(AdapterFormat.Loaded::model).orElseGet(() -> new FrozenModel(base));
    float[] values = adapter.map(AdapterFormat.Loaded::values).orElse(new float[0]);
    float[] predicted = new float[examples.size()];
    float[] gold = new float[examples.size()];
    double loss = 0;
    int at = 0;
    for (io.lorafleet.worker.model.Batch b : GlobalBatch.microBatches(examples, batch)) {
      try (ai.djl.ndarray.NDManager s = base.manager().newSubManager()) {
        ai.djl.ndarray.NDArray logits = base.forward(t.bind(s, values, false, Dropout.OFF).context(), b);
        float[] y = b.targets().orElseThrow(() -> new IllegalArgumentException("the split holds token labels but " + base.config().modelType()
            + " is a sequence classifier; prepare the data with --format classification"));
        loss += io.lorafleet.worker.train.TokenLoss.value(io.lorafleet.worker.train.SequenceLoss.sum(s, logits, y));
        float[] p = io.lorafleet.worker.train.SequenceLoss.predictions(logits);
        System.arraycopy(p, 0, predicted, at, p.length);
        System.arraycopy(y, 0, gold, at, y.length);
        at += p.length;
      }
    }
    return new Scores(loss, examples.size(), 0, examples.size(), predicted, gold, base.config().regression());
  }

  /** {@code b}'s rows {@code n} times over, one copy after another. */
  private static io.lorafleet.worker.model.Batch repeat(io.lorafleet.worker.model.Batch b, int n) {
    return new io.lorafleet.worker.model.Batch(tile(b.inputIds(), n), tile(b.labels(), n), tile(b.positionIds(), n), b.segmentIds().map(x -> tile(x, n)));
  }

  private static int[][] tile(int[][] rows, int n) {
    int[][] out = new int[rows.length * n][];
    for (int j = 0; j < n; j++) {
      System.arraycopy(rows, 0, out, j * rows.length, rows.length);
    }
    return out;
  }

  /** A task's rows of the split, checked against what {@code base} accepts. */
  private static List<Example> rows(LanguageModel base, String splitDir, org.apache.hadoop.conf.Configuration conf, java.util.Iterator<Integer> ids)
      throws java.io.IOException {
    SplitReader split = SplitReader.open(splitDir, conf, TokenLimits.of(base.config()), 4);
    List<Example> mine = new ArrayList<>();
    while (ids.hasNext()) {
      mine.add(split.row(ids.next()));
    }
    return mine;
  }

  /** The first {@code limit} rows of a split as Spark partitions of row ids, and the Hadoop conf that tasks read them with. */
  private record Pass(org.apache.spark.util.SerializableConfiguration conf, org.apache.spark.api.java.JavaRDD<Integer> rows) {}

  private static Pass pass(SparkSession spark, String splitDir, int partitions, int limit, String what) {
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
    jsc.setJobDescription("lorafleet eval: " + what + " on " + n + " examples of " + splitDir);
    return new Pass(conf, jsc.parallelize(IntStream.range(0, n).boxed().toList(), Math.max(1, Math.min(partitions, n))));
  }

  /**
   * {@link #localMany} on Spark: the split's examples spread over {@code partitions} tasks, each
   * loading the base once and every candidate once, the data read in one pass for all of them.
   */
  public static List<Scores> distributedMany(SparkSession spark, String model, io.lorafleet.worker.quant.Quantization quantize,
      io.lorafleet.worker.model.Labels labels, List<Optional<String>> adapters, String splitDir, int partitions, int limit) {
    Pass pass = pass(spark, splitDir, partitions, limit, adapters.size() + " candidates in one pass");
    var conf = pass.conf();
    List<String> paths = adapters.stream().map(a -> a.orElse("")).toList();
    List<Scores> zero = paths.stream().map(p -> Scores.ZERO).toList();
    return pass.rows().mapPartitions(it -> {
      LanguageModel base = ModelCache.model(model, Device.cpu(), conf.value(), quantize, labels);
      List<Example> mine = rows(base, splitDir, conf.value(), it);
      List<Optional<AdapterFormat.Loaded>> cands = new ArrayList<>();
      for (String p : paths) {
        cands.add(p.isEmpty() ? Optional.empty() : Optional.of(AdapterFormat.read(NodeCopy.of(p, NodeCopy.Kind.ADAPTER, conf.value()), base)));
      }
      return List.of(mine.isEmpty() ? zero : localMany(base, cands, mine, 16)).iterator();
    }).collect().stream() // in partition order, not in the order tasks finish: the sums and the predictions do not depend on timing
        .reduce(zero, (a, b) -> IntStream.range(0, a.size()).mapToObj(i -> a.get(i).plus(b.get(i))).toList());
  }

  /** Each example's prompt (every token before the first labelled one) and expected answer (the rest, EOS included). */
  private static void promptsAndAnswers(List<Example> examples, List<int[]> prompts, List<int[]> answers) {
    for (Example e : examples) {
      int first = firstLabel(e);
      if (first > 0) {
        prompts.add(Arrays.copyOf(e.inputIds(), first));
        answers.add(Arrays.copyOfRange(e.inputIds(), first, e.inputIds().length));
      }
    }
  }

  static int firstLabel(Example e) {
    for (int i = 0; i < e.labels().length; i++) {
      if (e.labels()[i] != Batch.IGNORE) {
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
    Pass pass = pass(spark, splitDir, partitions, limit, adapter.orElse("base " + model));
    var conf = pass.conf();
    String adapterPath = adapter.orElse("");
    return pass.rows().mapPartitions(it -> {
      LanguageModel base = ModelCache.model(model, Device.cpu(), conf.value(), quantize);
      List<Example> mine = rows(base, splitDir, conf.value(), it);
      Optional<AdapterFormat.Loaded> a = adapterPath.isEmpty() ? Optional.empty() : Optional.of(AdapterFormat.read(NodeCopy.of(adapterPath, NodeCopy.Kind.ADAPTER, conf.value()), base));
      return List.of(local(base, a, mine, 16)).iterator();
    }).collect().stream().reduce(Scores.ZERO, Scores::plus); // in partition order
  }
}
