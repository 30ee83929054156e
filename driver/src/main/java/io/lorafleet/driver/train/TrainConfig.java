package io.lorafleet.driver.train;

import io.lorafleet.driver.average.AdapterAverager;
import io.lorafleet.driver.average.Bema;
import io.lorafleet.driver.average.RunningAverages;
import io.lorafleet.worker.model.Labels;
import io.lorafleet.driver.allreduce.PortRange;
import io.lorafleet.driver.allreduce.Transport;
import io.lorafleet.driver.optim.AdamW;
import io.lorafleet.driver.optim.LossScaler;
import io.lorafleet.driver.optim.Schedule;
import io.lorafleet.worker.flat.FlatLayout;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.quant.Quantization;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.List;

/**
 * A training job, as named groups of settings, each validated at construction and the whole checked
 * across groups. Make one with {@link #builder}: it starts from the three required paths and holds
 * every other setting's default, written once here (the CLI's flags, job files and the Spark ML
 * Params all go through it). {@code batching.globalBatch} examples make one step, in slots of {@code
 * batching.microBatch}; each of the {@code batching.workers} computes a contiguous share of the slots.
 *
 * @param io where the base, the data and the run live
 * @param tuner the adapter trained: PEFT's LoraConfig, its method included (base_model_name_or_path
 *     is filled in by {@link #lora()})
 * @param batching workers, steps and the data order
 * @param optimization the driver's optimizer and learning-rate schedule
 * @param run checkpoints, resume and retries
 * @param eval validation loss during the run
 * @param averaging checkpoint averaging at the end of the run
 * @param channel how gradients travel to the driver
 * @param compute what the workers hold and how they compute
 */
public record TrainConfig(
    Io io,
    LoraConfig tuner,
    Batching batching,
    Optimization optimization,
    RunPolicy run,
    Evaluation eval,
    Averaging averaging,
    GradientChannel channel,
    Compute compute) implements Serializable {

  /** Default wait for executors (at launch and after a lost one): a GPU pod can take minutes to come up. */
  public static final int DEFAULT_EXECUTOR_WAIT_MS = 600_000;
  /** Record batches (of 256 rows) whose rows are shuffled together; a worker holds about this many at once. */
  public static final int DEFAULT_SHUFFLE_WINDOW = 8;
  /** PEFT's usual targets for a Llama-family decoder. */
  public static final String DEFAULT_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj";

  /**
   * @param model an HF model directory or Hadoop URI
   * @param data a directory written by lorafleet prepare
   * @param output the run directory
   * @param initAdapter a PEFT adapter to start from ("" for PEFT's init)
   * @param baseModelId what adapters record as base_model_name_or_path ("" for {@code model})
   * @param labels a classifier's labels instead of the base's config.json's (--labels, --num-labels, --regression)
   */
  public record Io(String model, String data, String output, String initAdapter, String baseModelId, Labels labels)
      implements Serializable {}

  /** @param epochs passes over the training split instead of {@code steps} (0: run {@code steps}) */
  public record Batching(int workers, int steps, int epochs, int globalBatch, int microBatch, int shuffleWindow, long seed) implements Serializable {
    public Batching {
      positive("workers", workers);
      positive("steps", steps);
      positive("global-batch", globalBatch);
      positive("micro-batch", microBatch);
      positive("shuffle-window", shuffleWindow);
      if (epochs < 0) {
        throw new IllegalArgumentException("--epochs must be >= 0 (0: run --steps) but found " + epochs);
      }
      if (globalBatch % microBatch != 0) {
        throw new IllegalArgumentException("--global-batch (" + globalBatch + ") must be a multiple of --micro-batch (" + microBatch + "): a step is "
            + "a whole number of micro-batch slots, the unit its gradient is summed in whatever the number of workers");
      }
      if (workers > globalBatch / microBatch) {
        throw new IllegalArgumentException("--workers " + workers + " exceeds the " + globalBatch / microBatch + " micro-batch slots of a step (--global-batch "
            + globalBatch + " / --micro-batch " + microBatch + "); use at most " + globalBatch / microBatch + " workers, a smaller --micro-batch or a "
            + "larger --global-batch");
      }
    }
  }

  /**
   * transformers' TrainingArguments for the optimizer and schedule, and LoRA+'s ratio (PEFT's
   * create_loraplus_optimizer, Hayou et al. 2024).
   *
   * @param optimizer adamw or sgd
   * @param clip the global gradient norm's bound (0: none)
   * @param loraplusLrRatio 0 for plain LoRA; else lora_B and every 1-D trainable tensor (biases, DoRA
   *     magnitudes) train at this times the learning rate, and biases without weight decay
   * @param warmupRatio warm-up as a fraction of the steps when {@code warmup} is 0
   * @param minLrRate cosine_with_min_lr's floor as a fraction of {@code lr}
   */
  public record Optimization(String optimizer, double lr, double weightDecay, double clip, double adamBeta1, double adamBeta2, double adamEpsilon,
      double loraplusLrRatio, String schedule, int warmup, double warmupRatio, double minLrRate) implements Serializable {
    public Optimization {
      if (!List.of("adamw", "sgd").contains(optimizer)) {
        throw new IllegalArgumentException("--optimizer must be adamw or sgd but found '" + optimizer + "'");
      }
      if (clip < 0) {
        throw new IllegalArgumentException("--clip must be >= 0 (0 disables) but found " + clip);
      }
      if (!(adamBeta1 >= 0 && adamBeta1 < 1) || !(adamBeta2 >= 0 && adamBeta2 < 1)) {
        throw new IllegalArgumentException("--adam-beta1 and --adam-beta2 must be in [0, 1) but found " + adamBeta1 + " and " + adamBeta2);
      }
      if (!(adamEpsilon > 0)) {
        throw new IllegalArgumentException("--adam-epsilon must be > 0 but found " + adamEpsilon);
      }
      if (!(warmupRatio >= 0 && warmupRatio < 1)) {
        throw new IllegalArgumentException("--warmup-ratio must be in [0, 1) but found " + warmupRatio);
      }
      if (!(minLrRate >= 0 && minLrRate < 1)) {
        throw new IllegalArgumentException("--min-lr-rate must be in [0, 1) but found " + minLrRate);
      }
      if (loraplusLrRatio < 0 || Double.isNaN(loraplusLrRatio)) {
        throw new IllegalArgumentException("--loraplus-lr-ratio must be >= 0 (0: plain LoRA) but found " + loraplusLrRatio);
      }
    }

    /** The learning-rate schedule over {@code steps} (transformers' definitions; warm-up from --warmup or --warmup-ratio). */
    public Schedule schedule(int steps) {
      return new Schedule(schedule, lr, Schedule.warmupSteps(warmup, warmupRatio, steps), steps, minLrRate);
    }

    /**
     * The optimizer's parameter groups over the flat layout: with LoRA+, lora_B and 1-D tensors at
     * ratio × lr, biases among them without weight decay (DoRA magnitudes keep it); everything else at lr.
     */
    List<AdamW.Group> groups(FlatLayout layout) {
      List<AdamW.Group> out = new ArrayList<>();
      for (FlatLayout.Slot s : layout.slots()) {
        if (s.frozen()) {
          out.add(AdamW.Group.frozen(s.offset(), s.offset() + s.size()));
          continue;
        }
        boolean oneD = s.shape().length == 1;
        boolean fast = loraplusLrRatio > 0 && (s.key().contains("lora_B") || oneD);
        boolean bias = s.key().endsWith(".bias"); // PEFT's groupB_no_decay: 1-D tensors named bias
        AdamW.Group g = new AdamW.Group(s.offset(), s.offset() + s.size(), fast ? loraplusLrRatio : 1.0, !(fast && bias));
        AdamW.Group last = out.isEmpty() ? null : out.get(out.size() - 1);
        if (last != null && last.to() == g.from() && last.lrScale() == g.lrScale() && last.decay() == g.decay()) {
          out.set(out.size() - 1, new AdamW.Group(last.from(), g.to(), g.lrScale(), g.decay())); // one run of like values
        } else {
          out.add(g);
        }
      }
      return out;
    }

    /** The driver's optimizer over {@code layout}, with these settings and LoRA+'s groups. */
    AdamW newOptimizer(FlatLayout layout) {
      return new AdamW(layout.size(), adamBeta1, adamBeta2, adamEpsilon, weightDecay, optimizer.equals("sgd"), groups(layout));
    }
  }

  /**
   * @param resume continue the newest valid checkpoint in the output
   * @param resumeAuto with resume: start afresh when the output holds no valid checkpoint
   * @param overwrite replace whatever the output holds
   * @param lock take the output's run lock (false: --no-lock, where the store cannot create a file
   *     exclusively, and a single writer is the user's to ensure)
   * @param timeoutMs how long the driver waits for a worker's answer
   * @param maxAttempts stage relaunches in a row without a new checkpoint before the run fails
   * @param executorWaitMs how long to wait for executors, at launch and after a lost one
   * @param minWorkers the fewest workers a relaunch may continue on at once instead of waiting for
   *     replacements (0: the run's workers, always wait); the run grows back at a later checkpoint
   */
  public record RunPolicy(int checkpointEvery, int keepCheckpoints, boolean resume, boolean resumeAuto, boolean overwrite, boolean lock,
      int timeoutMs, int maxAttempts, int executorWaitMs, int minWorkers) implements Serializable {
    public RunPolicy {
      if (minWorkers < 0) {
        throw new IllegalArgumentException("--min-workers must be >= 1 (or 0: --workers) but found " + minWorkers);
      }
      positive("checkpoint-every", checkpointEvery);
      positive("keep-checkpoints", keepCheckpoints);
      positive("timeout-ms", timeoutMs);
      positive("max-attempts", maxAttempts);
      positive("executor-wait-ms", executorWaitMs);
      if (resumeAuto && !resume) {
        throw new IllegalArgumentException("--resume=auto implies --resume; found resumeAuto without resume");
      }
      if (resume && overwrite) {
        throw new IllegalArgumentException("--resume continues the run in --out and --overwrite clears it; give one of them, not both");
      }
    }
  }

  /**
   * Validation loss over {@code examples} validation rows every {@code every} steps (0: never), and
   * the choice of the best candidate at each evaluation ({@link Selection#NONE}: none).
   */
  public record Evaluation(int every, int examples, Selection best) implements Serializable {
    public Evaluation {
      if (every < 0 || examples < 0) {
        throw new IllegalArgumentException("--eval-every and --eval-examples must be >= 0 (0 disables) but found " + every + " and " + examples);
      }
      if (best.on() && every == 0) {
        throw new IllegalArgumentException("--metric-for-best-model, --load-best-model-at-end and --early-stopping-patience choose at the run's "
            + "evaluations: set --eval-every");
      }
    }
  }

  /**
   * Keeping the best candidate (the live adapter, ema/ or bema/) by a validation metric, as
   * transformers' metric_for_best_model, greater_is_better and load_best_model_at_end, and stopping
   * early as its EarlyStoppingCallback: after {@code patience} evaluations in a row that did not
   * improve the best by more than {@code threshold} (0: never).
   *
   * @param metric loss, perplexity or exact_match (a causal LM), or accuracy, f1, matthews or
   *     pearson (a sequence classifier), as eval reports them ("" for none)
   */
  public record Selection(String metric, boolean greaterIsBetter, boolean loadAtEnd, int patience, double threshold) implements Serializable {
    public static final Selection NONE = new Selection("", false, false, 0, 0);
    /** eval's metrics: a causal LM's loss, perplexity and greedy exact match; a classifier's loss and its metrics. */
    public static final List<String> METRICS = List.of("loss", "perplexity", "exact_match", "accuracy", "f1", "matthews", "pearson");
    /** The metrics only a sequence classifier has. */
    public static final List<String> CLASSIFIER_METRICS = List.of("accuracy", "f1", "matthews", "pearson");

    public Selection {
      if (!metric.isEmpty() && !METRICS.contains(metric)) {
        throw new IllegalArgumentException("--metric-for-best-model must be one of " + String.join(", ", METRICS) + " (with or without eval_) but "
            + "found '" + metric + "'");
      }
      if (patience < 0 || threshold < 0) {
        throw new IllegalArgumentException("--early-stopping-patience and --early-stopping-threshold must be >= 0 but found " + patience + " and "
            + threshold);
      }
      if (metric.isEmpty() && (loadAtEnd || patience > 0)) {
        throw new IllegalArgumentException("--load-best-model-at-end and --early-stopping-patience need --metric-for-best-model");
      }
    }

    /**
     * As transformers resolves TrainingArguments: an eval_ prefix dropped, loss when load-best or
     * early stopping is asked for without a metric, and greater_is_better, when not given, false
     * for a name ending in loss and true otherwise.
     */
    public static Selection of(String metric, Boolean greaterIsBetter, boolean loadAtEnd, int patience, double threshold) {
      String m = metric.startsWith("eval_") ? metric.substring("eval_".length()) : metric;
      if (m.isEmpty() && (loadAtEnd || patience > 0)) {
        m = "loss";
      }
      boolean greater = greaterIsBetter != null ? greaterIsBetter : !m.isEmpty() && !m.endsWith("loss");
      return new Selection(m, greater, loadAtEnd, patience, threshold);
    }

    public boolean on() {
      return !metric.isEmpty();
    }

    /** The metric of a candidate's validation scores, as eval computes it. */
    public double value(io.lorafleet.driver.eval.Scores s) {
      return switch (metric) {
        case "loss" -> s.loss();
        case "perplexity" -> s.perplexity();
        case "exact_match" -> s.exactMatch();
        case "accuracy" -> s.metrics().accuracy();
        case "f1" -> s.metrics().f1();
        case "matthews" -> s.metrics().matthews();
        default -> s.metrics().pearson();
      };
    }

    /** Whether the run's evaluations must generate: a causal LM chosen by exact match. */
    public boolean generates() {
      return metric.equals("exact_match");
    }

    /** Whether {@code v} improves on {@code best} (NaN: none yet) by more than {@code by}. */
    public boolean improves(double v, double best, double by) {
      return Double.isNaN(best) || (greaterIsBetter ? v - best > by : best - v > by);
    }
  }

  /**
   * Averaging: the last {@code last} checkpoints averaged into averaged/ at the end of the run (0:
   * none), combined as {@code mode} (factor, cat or svd); the running averages the driver keeps
   * during it, written to ema/ and bema/: an EMA with decay {@code emaDecay} (0: none) and {@code
   * bema}, each updated every {@code every} steps; and, under --schedule warmup_stable_merge, the
   * final adapter merged from the last {@code mergeWindow} checkpoints, weighted uniformly ({@code
   * mergeDecay} 0) or as an EMA over them (decay^(K−1−i), newest heaviest).
   */
  public record Averaging(int last, String mode, double emaDecay, Bema bema, int every, int mergeWindow, double mergeDecay) implements Serializable {
    /** The merge's weights over the window's checkpoints, oldest first. */
    public double[] mergeWeights(int n) {
      if (mergeDecay == 0) {
        double[] w = new double[n];
        java.util.Arrays.fill(w, 1);
        return w;
      }
      return AdapterAverager.emaWeights(n, mergeDecay);
    }

    /** The running averages of a run with these settings, not yet started. */
    public RunningAverages newRunning() {
      return new RunningAverages(emaDecay, bema, every);
    }

    public Averaging {
      new RunningAverages(emaDecay, bema, every); // validates the decay and the cadence (the fields are not assigned yet)
      if (last < 0) {
        throw new IllegalArgumentException("--average-last must be >= 0 (0 disables) but found " + last);
      }
      if (!List.of("factor", "cat", "svd").contains(mode)) {
        throw new IllegalArgumentException("--average-mode must be factor, cat or svd but found '" + mode + "'");
      }
      if (mergeWindow < 0 || mergeDecay < 0 || mergeDecay >= 1) {
        throw new IllegalArgumentException("--merge-window must be >= 0 and --merge-decay in [0, 1) (0: uniform) but found " + mergeWindow + " and "
            + mergeDecay);
      }
    }
  }

  /**
   * @param ports a port or "lo-hi" range for the driver's channel ("" for any free port)
   * @param transport fp32, bf16 or fp16
   * @param preReduce executor (the workers of one executor add their gradients before one push) or none
   */
  public record GradientChannel(String ports, String transport, String preReduce) implements Serializable {
    public GradientChannel {
      PortRange.parse(ports); // validates the range
      Transport.parse(transport); // validates the name
      if (!List.of("executor", "none").contains(preReduce)) {
        throw new IllegalArgumentException("--pre-reduce must be executor or none but found '" + preReduce + "'");
      }
    }
  }

  /**
   * @param gradientCheckpointing layer checkpointing, blockwise attention and a chunked loss on the workers
   * @param initialLossScale fp16 loss scaling's first scale (torch's GradScaler init_scale)
   * @param quantize the base quantized at load (QLoRA with nf4)
   * @param modelDropout the base model's own dropouts in training, as transformers' train mode applies them (false: eval mode, --model-dropout off)
   * @param intraOpThreads PyTorch's intra-op threads on every worker, pinned so that a slot's gradient does not depend on the
   *     executor it lands on (0: spark.task.cpus, the cores Spark gives each task)
   * @param mixedRuns in a multi-run job, the most runs whose micro-batches share one forward and
   *     backward pass (0: all of them; 1: a pass per run, the activation memory of one run)
   */
  public record Compute(boolean gradientCheckpointing, double initialLossScale, Quantization quantize, boolean modelDropout, int intraOpThreads,
      int mixedRuns) implements Serializable {
    public Compute {
      if (mixedRuns < 0) {
        throw new IllegalArgumentException("--mixed-runs must be >= 0 (0: all) but found " + mixedRuns);
      }
      if (!(initialLossScale > 0)) {
        throw new IllegalArgumentException("--initial-loss-scale must be > 0 but found " + initialLossScale);
      }
      if (intraOpThreads < 0) {
        throw new IllegalArgumentException("--intra-op-threads must be >= 0 (0: spark.task.cpus) but found " + intraOpThreads);
      }
    }
  }

  /** The fewest workers a relaunch continues on: --min-workers, or --workers when it is 0. */
  public int minWorkers() {
    return run.minWorkers() > 0 ? run.minWorkers() : batching.workers();
  }

  public TrainConfig {
    if (run.minWorkers() > batching.workers()) {
      throw new IllegalArgumentException("--min-workers " + run.minWorkers() + " exceeds --workers " + batching.workers());
    }
    optimization.schedule(batching.steps()); // validates the schedule's name, the peak, the warm-up and the floor over the run's steps
    if (averaging.last() > 0) {
      tuner.method().notAveraged().ifPresent(why -> {
        throw new IllegalArgumentException("--average-last " + averaging.last() + " with " + why + "; drop --average-last");
      });
    }
    checkMerge(optimization, batching, run, averaging, tuner);
    if (compute.quantize().on()) {
      tuner.method().notOverQuantizedBase().ifPresent(why -> {
        throw new IllegalArgumentException(why + " (found with --quantize " + compute.quantize().method() + "); drop one of them");
      });
    }
  }

  /** --schedule warmup_stable_merge and --merge-window go together, and the window's checkpoints must exist and be kept. */
  private static void checkMerge(Optimization optimization, Batching batching, RunPolicy run, Averaging averaging, LoraConfig tuner) {
    boolean wsm = optimization.schedule(batching.steps()).merges();
    int k = averaging.mergeWindow();
    if (!wsm) {
      if (k > 0 || averaging.mergeDecay() > 0) {
        throw new IllegalArgumentException("--merge-window and --merge-decay are for --schedule warmup_stable_merge, found with --schedule "
            + optimization.schedule());
      }
      return;
    }
    int made = (batching.steps() + run.checkpointEvery() - 1) / run.checkpointEvery(); // the last step always checkpoints
    if (k < 2 || k > made || k > run.keepCheckpoints()) {
      throw new IllegalArgumentException("--schedule warmup_stable_merge merges the last --merge-window checkpoints: it must be at least 2, and at "
          + "most the " + made + " checkpoints that --steps " + batching.steps() + " and --checkpoint-every " + run.checkpointEvery()
          + " make and the " + run.keepCheckpoints() + " that --keep-checkpoints keeps; found " + k);
    }
    tuner.method().notAveraged().ifPresent(why -> {
      throw new IllegalArgumentException("--schedule warmup_stable_merge with " + why + "; choose another schedule");
    });
  }

  private static void positive(String f, int v) {
    if (v <= 0) {
      throw new IllegalArgumentException("--" + f + " must be > 0 but found " + v);
    }
  }

  /** The adapter this job trains, recording {@link #baseModelName()} as its base_model_name_or_path. */
  public LoraConfig lora() {
    return tuner.withBaseModel(baseModelName());
  }

  /** What adapters record as base_model_name_or_path: --base-model-id, or --model as given. */
  public String baseModelName() {
    return io.baseModelId().isEmpty() ? io.model() : io.baseModelId();
  }

  /** The learning-rate schedule of this job. */
  public Schedule lrSchedule() {
    return optimization.schedule(batching.steps());
  }

  /** A job over {@code model} and {@code data}, written to {@code output}, with every other setting at its default. */
  public static Builder builder(String model, String data, String output) {
    return new Builder(model, data, output);
  }

  /** A builder holding this job's values: set what differs, then {@link Builder#build()} (validated as any TrainConfig). */
  public Builder toBuilder() {
    return new Builder(this);
  }

  /** Every setting by name; the field initializers are the defaults, the same as the CLI's. */
  public static final class Builder {
    private String model;
    private String data;
    private String output;
    private String initAdapter = "";
    private String baseModelId = "";
    private Labels labels = Labels.FROM_CONFIG;
    private LoraConfig tuner = LoraConfig.ofTargetModules(8, 16, DEFAULT_TARGETS);
    private int workers = 2;
    private int steps = 100;
    private int epochs = 0;
    private int globalBatch = 8;
    private int microBatch = 4;
    private int shuffleWindow = DEFAULT_SHUFFLE_WINDOW;
    private long seed = 0;
    private String optimizer = "adamw";
    private double lr = 1e-3;
    private double weightDecay = 0;
    private double clip = 1.0;
    private double adamBeta1 = 0.9;
    private double adamBeta2 = 0.999;
    private double adamEpsilon = 1e-8;
    private double loraplusLrRatio = 0;
    private String schedule = "cosine";
    private int warmup = 0;
    private double warmupRatio = 0;
    private double minLrRate = 0;
    private int checkpointEvery = 10;
    private int keepCheckpoints = 5;
    private boolean resume = false;
    private boolean resumeAuto = false;
    private boolean overwrite = false;
    private boolean lock = true;
    private int timeoutMs = 120_000;
    private int maxAttempts = 3;
    private int executorWaitMs = DEFAULT_EXECUTOR_WAIT_MS;
    private int minWorkers = 0;
    private int evalEvery = 0;
    private int evalExamples = 64;
    private Selection best = Selection.NONE;
    private int averageLast = 0;
    private String averageMode = "svd";
    private double emaDecay = 0;
    private Bema bema = Bema.OFF;
    private int averageEvery = 1;
    private int mergeWindow = 0;
    private double mergeDecay = 0;
    private String gradientPorts = "";
    private String gradTransport = "fp32";
    private String preReduce = "executor";
    private boolean gradientCheckpointing = false;
    private double initialLossScale = LossScaler.INITIAL;
    private Quantization quantize = Quantization.NONE;
    private boolean modelDropout = true;
    private int intraOpThreads = 0;
    private int mixedRuns = 0;

    private Builder(String model, String data, String output) {
      this.model = model;
      this.data = data;
      this.output = output;
    }

    private Builder(TrainConfig c) {
      this(c.io.model(), c.io.data(), c.io.output());
      initAdapter = c.io.initAdapter();
      baseModelId = c.io.baseModelId();
      labels = c.io.labels();
      tuner = c.tuner;
      Batching b = c.batching;
      workers = b.workers();
      steps = b.steps();
      epochs = b.epochs();
      globalBatch = b.globalBatch();
      microBatch = b.microBatch();
      shuffleWindow = b.shuffleWindow();
      seed = b.seed();
      Optimization o = c.optimization;
      optimizer = o.optimizer();
      lr = o.lr();
      weightDecay = o.weightDecay();
      clip = o.clip();
      adamBeta1 = o.adamBeta1();
      adamBeta2 = o.adamBeta2();
      adamEpsilon = o.adamEpsilon();
      loraplusLrRatio = o.loraplusLrRatio();
      schedule = o.schedule();
      warmup = o.warmup();
      warmupRatio = o.warmupRatio();
      minLrRate = o.minLrRate();
      RunPolicy r = c.run;
      checkpointEvery = r.checkpointEvery();
      keepCheckpoints = r.keepCheckpoints();
      resume = r.resume();
      resumeAuto = r.resumeAuto();
      overwrite = r.overwrite();
      lock = r.lock();
      timeoutMs = r.timeoutMs();
      maxAttempts = r.maxAttempts();
      executorWaitMs = r.executorWaitMs();
      minWorkers = r.minWorkers();
      evalEvery = c.eval.every();
      evalExamples = c.eval.examples();
      best = c.eval.best();
      averageLast = c.averaging.last();
      averageMode = c.averaging.mode();
      emaDecay = c.averaging.emaDecay();
      bema = c.averaging.bema();
      averageEvery = c.averaging.every();
      mergeWindow = c.averaging.mergeWindow();
      mergeDecay = c.averaging.mergeDecay();
      gradientPorts = c.channel.ports();
      gradTransport = c.channel.transport();
      preReduce = c.channel.preReduce();
      gradientCheckpointing = c.compute.gradientCheckpointing();
      initialLossScale = c.compute.initialLossScale();
      quantize = c.compute.quantize();
      modelDropout = c.compute.modelDropout();
      intraOpThreads = c.compute.intraOpThreads();
      mixedRuns = c.compute.mixedRuns();
    }

    public Builder model(String v) {
      model = v;
      return this;
    }

    public Builder data(String v) {
      data = v;
      return this;
    }

    public Builder output(String v) {
      output = v;
      return this;
    }

    public Builder initAdapter(String v) {
      initAdapter = v;
      return this;
    }

    public Builder baseModelId(String v) {
      baseModelId = v;
      return this;
    }

    /** A classifier's labels instead of the base's config.json's, as transformers' from_pretrained(num_labels=…, id2label=…). */
    public Builder labels(Labels v) {
      labels = v;
      return this;
    }

    /** The adapter to train: PEFT's LoraConfig (r, alpha, dropout, targets and the method's own settings). */
    public Builder tuner(LoraConfig v) {
      tuner = v;
      return this;
    }

    public Builder workers(int v) {
      workers = v;
      return this;
    }

    public Builder steps(int v) {
      steps = v;
      return this;
    }

    public Builder epochs(int v) {
      epochs = v;
      return this;
    }

    public Builder globalBatch(int v) {
      globalBatch = v;
      return this;
    }

    public Builder microBatch(int v) {
      microBatch = v;
      return this;
    }

    public Builder shuffleWindow(int v) {
      shuffleWindow = v;
      return this;
    }

    public Builder seed(long v) {
      seed = v;
      return this;
    }

    public Builder optimizer(String v) {
      optimizer = v;
      return this;
    }

    public Builder lr(double v) {
      lr = v;
      return this;
    }

    public Builder weightDecay(double v) {
      weightDecay = v;
      return this;
    }

    public Builder clip(double v) {
      clip = v;
      return this;
    }

    public Builder adamBeta1(double v) {
      adamBeta1 = v;
      return this;
    }

    public Builder adamBeta2(double v) {
      adamBeta2 = v;
      return this;
    }

    public Builder adamEpsilon(double v) {
      adamEpsilon = v;
      return this;
    }

    public Builder loraplusLrRatio(double v) {
      loraplusLrRatio = v;
      return this;
    }

    public Builder schedule(String v) {
      schedule = v;
      return this;
    }

    public Builder warmup(int v) {
      warmup = v;
      return this;
    }

    public Builder warmupRatio(double v) {
      warmupRatio = v;
      return this;
    }

    public Builder minLrRate(double v) {
      minLrRate = v;
      return this;
    }

    public Builder checkpointEvery(int v) {
      checkpointEvery = v;
      return this;
    }

    public Builder keepCheckpoints(int v) {
      keepCheckpoints = v;
      return this;
    }

    public Builder resume(boolean v) {
      resume = v;
      return this;
    }

    public Builder resumeAuto(boolean v) {
      resumeAuto = v;
      return this;
    }

    public Builder overwrite(boolean v) {
      overwrite = v;
      return this;
    }

    public Builder lock(boolean v) {
      lock = v;
      return this;
    }

    public Builder timeoutMs(int v) {
      timeoutMs = v;
      return this;
    }

    public Builder maxAttempts(int v) {
      maxAttempts = v;
      return this;
    }

    public Builder executorWaitMs(int v) {
      executorWaitMs = v;
      return this;
    }

    public Builder minWorkers(int v) {
      minWorkers = v;
      return this;
    }

    public Builder evalEvery(int v) {
      evalEvery = v;
      return this;
    }

    public Builder evalExamples(int v) {
      evalExamples = v;
      return this;
    }

    public Builder best(Selection v) {
      best = v;
      return this;
    }

    public Builder averageLast(int v) {
      averageLast = v;
      return this;
    }

    public Builder averageMode(String v) {
      averageMode = v;
      return this;
    }

    public Builder emaDecay(double v) {
      emaDecay = v;
      return this;
    }

    public Builder bema(Bema v) {
      bema = v;
      return this;
    }

    public Builder averageEvery(int v) {
      averageEvery = v;
      return this;
    }

    public Builder mergeWindow(int v) {
      mergeWindow = v;
      return this;
    }

    public Builder mergeDecay(double v) {
      mergeDecay = v;
      return this;
    }

    public Builder gradientPorts(String v) {
      gradientPorts = v;
      return this;
    }

    public Builder gradTransport(String v) {
      gradTransport = v;
      return this;
    }

    public Builder preReduce(String v) {
      preReduce = v;
      return this;
    }

    public Builder gradientCheckpointing(boolean v) {
      gradientCheckpointing = v;
      return this;
    }

    public Builder initialLossScale(double v) {
      initialLossScale = v;
      return this;
    }

    public Builder quantize(Quantization v) {
      quantize = v;
      return this;
    }

    public Builder modelDropout(boolean v) {
      modelDropout = v;
      return this;
    }

    public Builder mixedRuns(int v) {
      mixedRuns = v;
      return this;
    }

    public Builder intraOpThreads(int v) {
      intraOpThreads = v;
      return this;
    }

    public TrainConfig build() {
      return new TrainConfig(
          new Io(model, data, output, initAdapter, baseModelId, labels),
          tuner,
          new Batching(workers, steps, epochs, globalBatch, microBatch, shuffleWindow, seed),
          new Optimization(optimizer, lr, weightDecay, clip, adamBeta1, adamBeta2, adamEpsilon, loraplusLrRatio, schedule, warmup, warmupRatio,
              minLrRate),
          new RunPolicy(checkpointEvery, keepCheckpoints, resume, resumeAuto, overwrite, lock, timeoutMs, maxAttempts, executorWaitMs, minWorkers),
          new Evaluation(evalEvery, evalExamples, best),
          new Averaging(averageLast, averageMode, emaDecay, bema, averageEvery, mergeWindow, mergeDecay),
          new GradientChannel(gradientPorts, gradTransport, preReduce),
          new Compute(gradientCheckpointing, initialLossScale, quantize, modelDropout, intraOpThreads, mixedRuns));
    }
  }
}
