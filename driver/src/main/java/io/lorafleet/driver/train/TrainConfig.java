package io.lorafleet.driver.train;

import io.lorafleet.driver.optim.LossScaler;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.quant.Quantization;
import java.io.Serializable;
import java.util.List;

/**
 * A training job, validated at construction. {@code globalBatch} examples make one step; each of
 * the {@code workers} takes globalBatch/workers of them, in micro-batches of {@code microBatch}.
 */
public record TrainConfig(
    String model,
    String data,
    String output,
    String targetModules,
    int rank,
    double alpha,
    double dropout,
    int workers,
    int steps,
    int globalBatch,
    int microBatch,
    double lr,
    int warmup,
    String schedule,
    String optimizer,
    double weightDecay,
    double clip,
    int checkpointEvery,
    int keepCheckpoints,
    long seed,
    int timeoutMs,
    int maxAttempts,
    boolean resume,
    String initAdapter,
    int evalEvery,
    int evalExamples,
    int averageLast,
    String averageMode,
    boolean resumeAuto,
    boolean overwrite,
    int executorWaitMs,
    String gradientPorts,
    int epochs,
    int shuffleWindow,
    boolean gradientCheckpointing,
    double initialLossScale,
    String gradTransport,
    String preReduce,
    LoraOptions loraOptions,
    String baseModelId,
    Quantization quantize,
    OptimizerOptions optimizerOptions) implements Serializable {

  /** Default wait for executors (at launch and after a lost one): a GPU pod can take minutes to come up. */
  public static final int DEFAULT_EXECUTOR_WAIT_MS = 600_000;

  /** A new run (no --resume=auto, no --overwrite), executors awaited for the default time, any gradient port. */
  public TrainConfig(String model, String data, String output, String targetModules, int rank, double alpha, double dropout, int workers, int steps,
      int globalBatch, int microBatch, double lr, int warmup, String schedule, String optimizer, double weightDecay, double clip, int checkpointEvery,
      int keepCheckpoints, long seed, int timeoutMs, int maxAttempts, boolean resume, String initAdapter, int evalEvery, int evalExamples,
      int averageLast, String averageMode) {
    this(model, data, output, targetModules, rank, alpha, dropout, workers, steps, globalBatch, microBatch, lr, warmup, schedule, optimizer, weightDecay,
        clip, checkpointEvery, keepCheckpoints, seed, timeoutMs, maxAttempts, resume, initAdapter, evalEvery, evalExamples, averageLast, averageMode,
        false, false, DEFAULT_EXECUTOR_WAIT_MS, "", 0, DEFAULT_SHUFFLE_WINDOW, false, LossScaler.INITIAL, "fp32", "executor", LoraOptions.DEFAULT, "", Quantization.NONE, OptimizerOptions.DEFAULT);
  }

  /** Record batches (of 256 rows) whose rows are shuffled together; a worker holds about this many at once. */
  public static final int DEFAULT_SHUFFLE_WINDOW = 8;

  public TrainConfig {
    positive("r", rank);
    positive("workers", workers);
    positive("steps", steps);
    positive("global-batch", globalBatch);
    positive("micro-batch", microBatch);
    positive("checkpoint-every", checkpointEvery);
    positive("keep-checkpoints", keepCheckpoints);
    positive("timeout-ms", timeoutMs);
    positive("max-attempts", maxAttempts);
    positive("executor-wait-ms", executorWaitMs);
    positive("shuffle-window", shuffleWindow);
    if (!(initialLossScale > 0)) {
      throw new IllegalArgumentException("--initial-loss-scale must be > 0 but found " + initialLossScale);
    }
    if (epochs < 0) {
      throw new IllegalArgumentException("--epochs must be >= 0 (0: run --steps) but found " + epochs);
    }
    if (resumeAuto && !resume) {
      throw new IllegalArgumentException("--resume=auto implies --resume; found resumeAuto without resume");
    }
    if (resume && overwrite) {
      throw new IllegalArgumentException("--resume continues the run in --out and --overwrite clears it; give one of them, not both");
    }
    io.lorafleet.driver.allreduce.PortRange.parse(gradientPorts); // validates the range
    io.lorafleet.driver.allreduce.Transport.parse(gradTransport); // validates the name
    if (!List.of("executor", "none").contains(preReduce)) {
      throw new IllegalArgumentException("--pre-reduce must be executor or none but found '" + preReduce + "'");
    }
    if (globalBatch % workers != 0) {
      throw new IllegalArgumentException("--global-batch (" + globalBatch + ") must be a multiple of --workers (" + workers + ")");
    }
    if (evalEvery < 0 || evalExamples < 0 || averageLast < 0) {
      throw new IllegalArgumentException("--eval-every, --eval-examples and --average-last must be >= 0 (0 disables)");
    }
    if (!List.of("factor", "cat", "svd").contains(averageMode)) {
      throw new IllegalArgumentException("--average-mode must be factor, cat or svd but found '" + averageMode + "'");
    }
    schedule(schedule, lr, warmup, steps, optimizerOptions); // validates the schedule's name, the peak, the warm-up and the floor
    if (!List.of("adamw", "sgd").contains(optimizer)) {
      throw new IllegalArgumentException("--optimizer must be adamw or sgd but found '" + optimizer + "'");
    }
    if (clip < 0) {
      throw new IllegalArgumentException("--clip must be >= 0 (0 disables) but found " + clip);
    }
    if (averageLast > 0 && (loraOptions.useDora() || loraOptions.vera().on() || loraOptions.adalora().on())) {
      throw new IllegalArgumentException("--average-last " + averageLast + " with " + (loraOptions.useDora() ? "--use-dora: averaging DoRA adapters "
          + "is not supported (the magnitude of an average is not the average of the magnitudes)" : "--peft-type " + (loraOptions.vera().on() ? "vera"
              : "adalora") + ": averaging those adapters is not supported") + "; drop --average-last");
    }
    if (quantize.on() && loraOptions.useDora()) {
      throw new IllegalArgumentException("--use-dora with --quantize " + quantize.method() + ": DoRA over a quantized base is not supported yet; "
          + "drop one of them");
    }
    toLora(targetModules, rank, alpha, dropout, model, loraOptions); // validates r, alpha, dropout, target names and PEFT's options
  }

  private static void positive(String f, int v) {
    if (v <= 0) {
      throw new IllegalArgumentException("--" + f + " must be > 0 but found " + v);
    }
  }

  public LoraConfig lora() {
    return toLora(targetModules, rank, alpha, dropout, baseModelName(), loraOptions);
  }

  /** --target-modules read by {@link LoraConfig#ofTargetModules}, with this job's dropout, base and options. */
  private static LoraConfig toLora(String targetModules, int rank, double alpha, double dropout, String model, LoraOptions options) {
    return options.apply(LoraConfig.ofTargetModules(rank, alpha, targetModules).withDropout(dropout).withBaseModel(model));
  }

  /** The same job with validation loss every {@code every} steps. */
  public TrainConfig withEval(int every) {
    return toBuilder().evalEvery(every).evalExamples(Math.max(1, evalExamples)).build();
  }

  /** The same job with layer checkpointing, blockwise attention and a chunked loss on the workers. */
  public TrainConfig withGradientCheckpointing(boolean on) {
    return toBuilder().gradientCheckpointing(on).build();
  }

  /** The same job starting fp16 loss scaling at {@code scale} (torch's GradScaler init_scale). */
  public TrainConfig withInitialLossScale(double scale) {
    return toBuilder().initialLossScale(scale).build();
  }

  /** The same job for {@code n} steps (what --epochs comes to), instead of a number of epochs. */
  public TrainConfig withSteps(int n) {
    return toBuilder().steps(n).epochs(0).build();
  }

  /** The same job writing to {@code out}, for {@code n} steps. */
  public TrainConfig withOutput(String out, int n) {
    return toBuilder().output(out).steps(n).build();
  }

  /**
   * The same job with other run-management settings.
   *
   * @param resume continue the newest valid checkpoint in the output
   * @param auto with resume: start afresh when the output holds no valid checkpoint
   * @param clear replace whatever the output holds
   */
  public TrainConfig withRun(boolean resume, boolean auto, boolean clear) {
    return toBuilder().resume(resume).resumeAuto(auto).overwrite(clear).build();
  }

  /** The same job with its gradient channel on a port in {@code ports} ("lo-hi", "" for any). */
  public TrainConfig withGradientPorts(String ports) {
    return toBuilder().gradientPorts(ports).build();
  }

  /** The same job with gradients sent as {@code transport} and pre-reduced per {@code preReduce} (executor or none). */
  public TrainConfig withGradientChannel(String transport, String preReduce) {
    return toBuilder().gradTransport(transport).preReduce(preReduce).build();
  }

  /** The same job recording {@code id} (a Hub id such as meta-llama/Llama-3.1-8B) as the adapters' base_model_name_or_path. */
  public TrainConfig withBaseModelId(String id) {
    return toBuilder().baseModelId(id).build();
  }

  /** What adapters record as base_model_name_or_path: --base-model-id, or --model as given. */
  public String baseModelName() {
    return baseModelId.isEmpty() ? model : baseModelId;
  }

  /** The same job with PEFT's other LoRA options and LoRA+. */
  public TrainConfig withLoraOptions(LoraOptions o) {
    return toBuilder().loraOptions(o).build();
  }

  /** The learning-rate schedule of this job (transformers' definitions; warm-up from --warmup or --warmup-ratio). */
  public io.lorafleet.driver.optim.Schedule lrSchedule() {
    return schedule(schedule, lr, warmup, steps, optimizerOptions);
  }

  private static io.lorafleet.driver.optim.Schedule schedule(String kind, double lr, int warmup, int steps, OptimizerOptions o) {
    return new io.lorafleet.driver.optim.Schedule(kind, lr, io.lorafleet.driver.optim.Schedule.warmupSteps(warmup, o.warmupRatio(), steps), steps,
        o.minLrRate());
  }

  /** This job with Adam's betas and epsilon, --warmup-ratio and --min-lr-rate. */
  public TrainConfig withOptimizerOptions(OptimizerOptions o) {
    return toBuilder().optimizerOptions(o).build();
  }

  /** This job over a base quantized at load (QLoRA with nf4). */
  public TrainConfig withQuantize(Quantization q) {
    return toBuilder().quantize(q).build();
  }

  /** A builder holding this job's values: set what differs, then {@link Builder#build()} (validated as any TrainConfig). */
  public Builder toBuilder() {
    return new Builder(this);
  }

  /** Copies a TrainConfig field by field; every setter is named as the record component it sets. */
  public static final class Builder {
    private String model;
    private String data;
    private String output;
    private String targetModules;
    private int rank;
    private double alpha;
    private double dropout;
    private int workers;
    private int steps;
    private int globalBatch;
    private int microBatch;
    private double lr;
    private int warmup;
    private String schedule;
    private String optimizer;
    private double weightDecay;
    private double clip;
    private int checkpointEvery;
    private int keepCheckpoints;
    private long seed;
    private int timeoutMs;
    private int maxAttempts;
    private boolean resume;
    private String initAdapter;
    private int evalEvery;
    private int evalExamples;
    private int averageLast;
    private String averageMode;
    private boolean resumeAuto;
    private boolean overwrite;
    private int executorWaitMs;
    private String gradientPorts;
    private int epochs;
    private int shuffleWindow;
    private boolean gradientCheckpointing;
    private double initialLossScale;
    private String gradTransport;
    private String preReduce;
    private LoraOptions loraOptions;
    private String baseModelId;
    private Quantization quantize;
    private OptimizerOptions optimizerOptions;

    private Builder(TrainConfig c) {
      model = c.model;
      data = c.data;
      output = c.output;
      targetModules = c.targetModules;
      rank = c.rank;
      alpha = c.alpha;
      dropout = c.dropout;
      workers = c.workers;
      steps = c.steps;
      globalBatch = c.globalBatch;
      microBatch = c.microBatch;
      lr = c.lr;
      warmup = c.warmup;
      schedule = c.schedule;
      optimizer = c.optimizer;
      weightDecay = c.weightDecay;
      clip = c.clip;
      checkpointEvery = c.checkpointEvery;
      keepCheckpoints = c.keepCheckpoints;
      seed = c.seed;
      timeoutMs = c.timeoutMs;
      maxAttempts = c.maxAttempts;
      resume = c.resume;
      initAdapter = c.initAdapter;
      evalEvery = c.evalEvery;
      evalExamples = c.evalExamples;
      averageLast = c.averageLast;
      averageMode = c.averageMode;
      resumeAuto = c.resumeAuto;
      overwrite = c.overwrite;
      executorWaitMs = c.executorWaitMs;
      gradientPorts = c.gradientPorts;
      epochs = c.epochs;
      shuffleWindow = c.shuffleWindow;
      gradientCheckpointing = c.gradientCheckpointing;
      initialLossScale = c.initialLossScale;
      gradTransport = c.gradTransport;
      preReduce = c.preReduce;
      loraOptions = c.loraOptions;
      baseModelId = c.baseModelId;
      quantize = c.quantize;
      optimizerOptions = c.optimizerOptions;
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

    public Builder targetModules(String v) {
      targetModules = v;
      return this;
    }

    public Builder rank(int v) {
      rank = v;
      return this;
    }

    public Builder alpha(double v) {
      alpha = v;
      return this;
    }

    public Builder dropout(double v) {
      dropout = v;
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

    public Builder globalBatch(int v) {
      globalBatch = v;
      return this;
    }

    public Builder microBatch(int v) {
      microBatch = v;
      return this;
    }

    public Builder lr(double v) {
      lr = v;
      return this;
    }

    public Builder warmup(int v) {
      warmup = v;
      return this;
    }

    public Builder schedule(String v) {
      schedule = v;
      return this;
    }

    public Builder optimizer(String v) {
      optimizer = v;
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

    public Builder checkpointEvery(int v) {
      checkpointEvery = v;
      return this;
    }

    public Builder keepCheckpoints(int v) {
      keepCheckpoints = v;
      return this;
    }

    public Builder seed(long v) {
      seed = v;
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

    public Builder resume(boolean v) {
      resume = v;
      return this;
    }

    public Builder initAdapter(String v) {
      initAdapter = v;
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

    public Builder averageLast(int v) {
      averageLast = v;
      return this;
    }

    public Builder averageMode(String v) {
      averageMode = v;
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

    public Builder executorWaitMs(int v) {
      executorWaitMs = v;
      return this;
    }

    public Builder gradientPorts(String v) {
      gradientPorts = v;
      return this;
    }

    public Builder epochs(int v) {
      epochs = v;
      return this;
    }

    public Builder shuffleWindow(int v) {
      shuffleWindow = v;
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

    public Builder gradTransport(String v) {
      gradTransport = v;
      return this;
    }

    public Builder preReduce(String v) {
      preReduce = v;
      return this;
    }

    public Builder loraOptions(LoraOptions v) {
      loraOptions = v;
      return this;
    }

    public Builder baseModelId(String v) {
      baseModelId = v;
      return this;
    }

    public Builder quantize(Quantization v) {
      quantize = v;
      return this;
    }

    public Builder optimizerOptions(OptimizerOptions v) {
      optimizerOptions = v;
      return this;
    }

    public TrainConfig build() {
      return new TrainConfig(model, data, output, targetModules, rank, alpha, dropout, workers, steps, globalBatch, microBatch, lr, warmup, schedule,
          optimizer, weightDecay, clip, checkpointEvery, keepCheckpoints, seed, timeoutMs, maxAttempts, resume, initAdapter, evalEvery, evalExamples,
          averageLast, averageMode, resumeAuto, overwrite, executorWaitMs, gradientPorts, epochs, shuffleWindow, gradientCheckpointing,
          initialLossScale, gradTransport, preReduce, loraOptions, baseModelId, quantize, optimizerOptions);
    }
  }
}
