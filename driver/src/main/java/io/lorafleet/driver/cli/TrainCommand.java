package io.lorafleet.driver.cli;

import io.lorafleet.driver.train.TrainConfig;
import io.lorafleet.driver.train.Trainer;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.PeftMethod;
import io.lorafleet.worker.lora.PeftMethods;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

@Command(name = "train", mixinStandardHelpOptions = true, description = "Train a LoRA adapter on N Spark workers; the driver all-reduces gradients and checkpoints.")
final class TrainCommand implements Callable<Integer> {
  @picocli.CommandLine.Mixin LabelOptions labelOptions = new LabelOptions();
  @Option(names = "--config", description = "a YAML or JSON job file: fields are these flags without '--', plus a 'spark' map of Spark confs; flags override it") String config;
  @Option(names = "--spark-conf", description = "a Spark conf key=value (repeatable)") Map<String, String> sparkConf = new LinkedHashMap<>();
  @Option(names = "--spark-ui", description = "keep Spark's web UI on in local mode (port 4040, or spark.ui.port), with lorafleet's training gauges "
      + "at /metrics/prometheus") boolean sparkUi;
  @Option(names = "--model", description = "base model: an HF model directory or a Hadoop filesystem URI", required = true) String model;
  @Option(names = "--data", required = true, description = "a directory written by lorafleet prepare") String data;
  @Option(names = "--out", description = "run directory: checkpoints, metrics.jsonl, adapter/ (any Hadoop filesystem URI); a multi-run job "
      + "writes each run to runs/<name>/ in it, and runs.json", required = true) String out;
  @Option(names = "--runs", hidden = true, description = "a multi-run job's runs as JSON (the job file's runs: and grid:, expanded)") String runs;
  @Option(names = "--prune-at", split = ",", description = "successive halving over a multi-run job's runs: at each of these steps, rank the "
      + "runs by validation loss and stop all but the best --keep-fraction (each run's --eval-every must divide every step)") List<Integer> pruneAt =
      new java.util.ArrayList<>();
  @Option(names = "--mixed-runs", defaultValue = "0", description = "in a multi-run job, the most runs whose micro-batches share one forward "
      + "and backward pass (0, the default: all; 1: a pass per run, with the activation memory of one run)") int mixedRuns;
  @Option(names = "--keep-fraction", defaultValue = "0.5", description = "the fraction of a multi-run job's runs each --prune-at rung keeps "
      + "(rounded up; default 0.5)") double keepFraction;
  @Option(names = "--target-modules", description = "modules to adapt: names (comma-separated), all-linear, or one regex over the module path; empty ('') trains a sequence classifier's head alone (a linear probe)", defaultValue = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj") String targets;
  @Option(names = "--r", description = "LoRA rank (PEFT's r)", defaultValue = "8") int r;
  @Option(names = "--lora-alpha", description = "LoRA scaling numerator: the update is lora_alpha/r times B·A", defaultValue = "16") double alpha;
  @Option(names = {"--lora-dropout", "--vera-dropout"}, defaultValue = "0.0", description = "dropout on the adapter's input (PEFT's "
      + "lora_dropout, or vera_dropout with --peft-type vera)") double dropout;
  @Option(names = "--workers", description = "training tasks, one per GPU or CPU slot", defaultValue = "2") int workers;
  @Option(names = "--local-threads", description = "local[N] when not under spark-submit (default: --workers; at least --workers, since the "
      + "training stage is a barrier)") Integer localThreads;
  @Option(names = "--steps", description = "optimizer steps (see --epochs)", defaultValue = "100") int steps;
  @Option(names = "--gradient-checkpointing", description = "flat activation memory in sequence length: layer checkpointing, blockwise "
      + "attention and a chunked loss (about a third more compute)") boolean gradientCheckpointing;
  @Option(names = "--model-dropout", defaultValue = "on", description = "on: the base model's own dropouts in training, as transformers' train "
      + "mode applies them (hidden_dropout_prob, attention_probs_dropout_prob, GPT-2's resid/embd/attn_pdrop, …), masks keyed by row; off: the "
      + "model as in eval mode, LoRA's dropout alone") String modelDropout;
  @Option(names = "--initial-loss-scale", defaultValue = "65536", description = "fp16 compute: the first loss scale (GradScaler's init_scale)")
  double initialLossScale;
  @Option(names = "--epochs", defaultValue = "0", description = "train this many passes over the training split instead of --steps (0: use --steps)")
  int epochs;
  @Option(names = "--shuffle-window", defaultValue = "" + TrainConfig.DEFAULT_SHUFFLE_WINDOW,
      description = "record batches whose rows are shuffled together each epoch (each worker holds about this many)") int shuffleWindow;
  @Option(names = "--global-batch", description = "examples per optimizer step, over all workers: a multiple of --micro-batch, whose slots the "
      + "workers share out (the update is bit-identical for any --workers up to global-batch/micro-batch)", defaultValue = "8") int globalBatch;
  @Option(names = "--micro-batch", description = "examples per forward/backward pass on a worker, one slot of the global batch (gradient "
      + "accumulation makes up the rest)", defaultValue = "4") int microBatch;
  @Option(names = "--intra-op-threads", defaultValue = "0", description = "PyTorch's intra-op threads on every worker, the same everywhere so "
      + "that no gradient depends on the executor it runs on (0: spark.task.cpus)") int intraOpThreads;
  @Option(names = "--lr", description = "peak learning rate", defaultValue = "1e-3") double lr;
  @Option(names = "--warmup", description = "warm-up steps: the learning rate rises as lr*step/warmup from 0 (transformers' warmup_steps)",
      defaultValue = "0") int warmup;
  @Option(names = "--warmup-ratio", description = "warm-up as a fraction of the steps, ceil(steps*ratio), when --warmup is 0 (transformers' "
      + "warmup_ratio)", defaultValue = "0") double warmupRatio;
  @Option(names = "--schedule", description = "learning-rate schedule, as transformers defines it: linear, cosine, cosine_with_min_lr, constant "
      + "(no warm-up) or constant_with_warmup; or warmup_stable_merge (WSM): constant_with_warmup's rates, and the final adapter/ is the merge "
      + "of the last --merge-window checkpoints instead of a decayed run", defaultValue = "cosine") String schedule;
  @Option(names = "--merge-window", defaultValue = "0", description = "warmup_stable_merge: how many of the last checkpoints adapter/ merges "
      + "(at least 2), combined as --average-mode") int mergeWindow;
  @Option(names = "--merge-decay", defaultValue = "0", description = "warmup_stable_merge: 0 weighs the window's checkpoints alike; D in (0, 1) "
      + "weighs the i-th of K by D^(K-1-i), newest heaviest (an EMA over them)") double mergeDecay;
  @Option(names = "--min-lr-rate", description = "cosine_with_min_lr: the floor as a fraction of --lr (transformers' min_lr_rate)",
      defaultValue = "0") double minLrRate;
  @Option(names = "--adam-beta1", description = "AdamW's beta1", defaultValue = "0.9") double adamBeta1;
  @Option(names = "--adam-beta2", description = "AdamW's beta2", defaultValue = "0.999") double adamBeta2;
  @Option(names = "--adam-epsilon", description = "AdamW's epsilon", defaultValue = "1e-8") double adamEpsilon;
  @Option(names = "--optimizer", description = "adamw or sgd, run on the driver", defaultValue = "adamw") String optimizer;
  @Option(names = "--weight-decay", description = "AdamW's decoupled weight decay", defaultValue = "0.0") double weightDecay;
  @Option(names = "--clip", description = "clip the global gradient norm to this (0: no clipping)", defaultValue = "1.0") double clip;
  @Option(names = "--checkpoint-every", description = "steps between checkpoints", defaultValue = "10") int checkpointEvery;
  @Option(names = "--keep-checkpoints", description = "checkpoints kept; older ones are pruned", defaultValue = "5") int keep;
  @Option(names = "--seed", description = "seed of the adapter init, the data order and dropout", defaultValue = "0") long seed;
  @Option(names = "--timeout-ms", description = "how long the driver waits for a worker's answer before failing the step", defaultValue = "120000") int timeoutMs;
  @Option(names = "--max-attempts", description = "stage relaunches in a row without a new checkpoint before the run fails", defaultValue = "3") int maxAttempts;
  @Option(names = "--resume", arity = "0..1", fallbackValue = "true", paramLabel = "auto",
      description = "continue the newest valid checkpoint in --out (an error if there is none); --resume=auto starts afresh when there is none")
  String resume = "false";
  @Option(names = "--overwrite", description = "clear --out first if it already holds a run") boolean overwrite;
  @Option(names = "--no-lock", description = "write --out without its run lock: for an object store that cannot create a file exclusively "
      + "(train refuses such a store otherwise); a single writer is then yours to ensure") boolean noLock;
  @Option(names = "--executor-wait-ms", defaultValue = "" + TrainConfig.DEFAULT_EXECUTOR_WAIT_MS,
      description = "how long to wait for executors, at launch and for replacements after a lost one") int executorWaitMs;
  @Option(names = "--min-workers", defaultValue = "0", description = "after a lost executor, continue at once from the last checkpoint on as "
      + "few as this many workers instead of waiting --executor-wait-ms for replacements, and grow back to --workers at a later checkpoint "
      + "once executors return; the update is the same bytes at any worker count (0: --workers, always wait)") int minWorkers;
  @Option(names = "--gradient-ports", defaultValue = "", description = "port or LO-HI range for the driver's gradient channel (default: any free port)")
  String gradientPorts;
  @Option(names = "--grad-transport", defaultValue = "fp32", description = "how gradients travel to the driver: fp32 (exact), bf16 or fp16 "
      + "(half the bytes; the driver still accumulates and updates in fp32)") String gradTransport;
  @Option(names = "--pre-reduce", defaultValue = "executor", description = "executor: the workers of one executor add their gradients before "
      + "one push and share one pull (bit-identical to none); none: every worker pushes its own") String preReduce;
  @Option(names = "--use-rslora", description = "PEFT's use_rslora: scale the update by lora_alpha/sqrt(r) instead of lora_alpha/r") boolean useRslora;
  @Option(names = "--bias", defaultValue = "none", description = "PEFT's bias: none, lora_only (train the biases of adapted modules) or all") String bias;
  @Option(names = "--rank-pattern", paramLabel = "NAME=R", description = "PEFT's rank_pattern: rank R for modules whose path ends in NAME (a regex); repeatable")
  Map<String, Integer> rankPattern = new LinkedHashMap<>();
  @Option(names = "--alpha-pattern", paramLabel = "NAME=A", description = "PEFT's alpha_pattern: lora_alpha A for modules whose path ends in NAME; repeatable")
  Map<String, Double> alphaPattern = new LinkedHashMap<>();
  @Option(names = "--layers-to-transform", split = ",", description = "PEFT's layers_to_transform: adapt only these decoder layers (e.g. 0,1,2)")
  List<Integer> layersToTransform = new java.util.ArrayList<>();
  @Option(names = "--modules-to-save", split = ",", description = "PEFT's modules_to_save for a sequence classifier: the modules trained whole "
      + "(default: its classification head, as PEFT's SEQ_CLS); e.g. pooler,classifier to train BERT's pooler too")
  List<String> modulesToSave = new java.util.ArrayList<>();
  @Option(names = "--init-lora-weights", defaultValue = "true", description = "PEFT's init_lora_weights: true (Kaiming-uniform A, B = 0), "
      + "gaussian (A ~ N(0, 1/r^2), B = 0) or false (A and B both random, for tests)") String initLoraWeights;
  @Option(names = "--loraplus-lr-ratio", defaultValue = "0", description = "LoRA+: lora_B and biases train at this times --lr (biases without weight "
      + "decay), as PEFT's create_loraplus_optimizer; 0 is plain LoRA") double loraplusLrRatio;
  @Option(names = "--use-dora", description = "PEFT's use_dora: DoRA, a trainable magnitude per output row over the LoRA-updated direction") boolean useDora;
  @Option(names = "--peft-type", defaultValue = "lora", description = "lora; dora (as --use-dora); vera (shared frozen random "
      + "projections, trainable scaling vectors; --r defaults to 256 as in PEFT); adalora (ranks allocated by importance on the driver, see --init-r); "
      + "or a method registered as a PeftMethod.Provider") String peftType;
  @Option(names = "--init-r", defaultValue = "12", description = "AdaLoRA: the initial rank of every module (PEFT's init_r)") int initR;
  @Option(names = "--target-r", defaultValue = "8", description = "AdaLoRA: the average rank the budget falls to (PEFT's target_r)") int targetR;
  @Option(names = "--tinit", defaultValue = "0", description = "AdaLoRA: steps before the budget starts to fall") int tinit;
  @Option(names = "--tfinal", defaultValue = "0", description = "AdaLoRA: final steps at the fixed allocation") int tfinal;
  @Option(names = {"--delta-t", "--deltaT"}, defaultValue = "1", description = "AdaLoRA: steps between two allocations (PEFT's deltaT)") int deltaT;
  @Option(names = "--beta1", defaultValue = "0.85", description = "AdaLoRA: smoothing of the sensitivity") double beta1;
  @Option(names = "--beta2", defaultValue = "0.85", description = "AdaLoRA: smoothing of the uncertainty") double beta2;
  @Option(names = "--orth-reg-weight", defaultValue = "0.5", description = "AdaLoRA: weight of the orthogonal regularization") double orthRegWeight;
  @Option(names = "--total-step", defaultValue = "0", description = "AdaLoRA: the schedule's total steps (0: --steps)") int totalStep;
  @Option(names = "--d-initial", defaultValue = "0.1", description = "VeRA: the initial value of every lambda_d (PEFT's d_initial)") double dInitial;
  @Option(names = "--projection-prng-key", defaultValue = "0", description = "VeRA: the seed of the shared projections (PEFT's projection_prng_key)")
  long projectionPrngKey;
  @Option(names = "--base-model-id", defaultValue = "", description = "what adapters record as base_model_name_or_path (a Hub id such as "
      + "meta-llama/Llama-3.1-8B); default: --model as given") String baseModelId;
  @Spec CommandSpec spec;
  @picocli.CommandLine.Mixin QuantizeOptions quantize;
  @Option(names = "--init-adapter", description = "start from this PEFT adapter (its LoRA config is adopted)", defaultValue = "") String initAdapter;
  @Option(names = "--eval-every", defaultValue = "0", description = "validation loss every N steps (0: never)") int evalEvery;
  @Option(names = "--eval-examples", description = "validation examples for --eval-every", defaultValue = "64") int evalExamples;
  @Option(names = "--metric-for-best-model", defaultValue = "", description = "at each --eval-every, keep the best of the live adapter and the "
      + "running averages (--ema-decay, --bema) by loss or perplexity (an eval_ prefix is dropped) in best/, as transformers' "
      + "metric_for_best_model") String metricForBestModel;
  @Option(names = "--greater-is-better", arity = "0..1", fallbackValue = "true", description = "whether a higher metric is better (default, "
      + "as transformers: false for a name ending in loss, true otherwise)") Boolean greaterIsBetter;
  @Option(names = "--load-best-model-at-end", description = "make adapter/ the best candidate (best/) at the end of the run") boolean loadBestModelAtEnd;
  @Option(names = "--early-stopping-patience", defaultValue = "0", description = "stop after this many evaluations in a row that do not improve "
      + "the best by more than --early-stopping-threshold (transformers' EarlyStoppingCallback; 0: never)") int earlyStoppingPatience;
  @Option(names = "--early-stopping-threshold", defaultValue = "0", description = "how much an evaluation must improve the best by to count")
  double earlyStoppingThreshold;
  @Option(names = "--average-last", defaultValue = "0", description = "average the last K checkpoints into averaged/") int averageLast;
  @Option(names = "--average-mode", defaultValue = "svd", description = "factor, cat or svd") String averageMode;
  @Option(names = "--ema-decay", defaultValue = "0", description = "keep an EMA of the adapter on the driver, ema <- D*ema + (1-D)*adapter, "
      + "written to ema/ (0: none)") double emaDecay;
  @Option(names = "--bema", description = "keep a bias-corrected EMA (BEMA, arXiv 2508.00180) of the adapter on the driver, written to bema/: "
      + "after --bema-update-after steps (tau) theta0 is snapshotted; then at t steps past tau, beta=max((lag+multiplier*t)^-ema_power, "
      + "min_ema_multiplier), ema <- (1-beta)*ema + beta*theta, bema = ema + (lag+multiplier*t)^-bias_power * (theta - theta0)") boolean bema;
  @Option(names = "--average-every", defaultValue = "1", description = "steps between updates of --ema-decay's and --bema's averages "
      + "(default 1: every step; TRL's BEMACallback updates every 400 steps by default, which a short run rarely reaches)") int averageEvery;
  @Option(names = "--bema-ema-power", defaultValue = "0.5", description = "BEMA's kappa (default 0.5; 0 turns the EMA off)") double bemaEmaPower;
  @Option(names = "--bema-bias-power", defaultValue = "0.2", description = "BEMA's eta (default 0.2; 0 keeps the bias correction whole)") double bemaBiasPower;
  @Option(names = "--bema-lag", defaultValue = "10", description = "BEMA's rho, a virtual starting age (default 10)") double bemaLag;
  @Option(names = "--bema-update-after", defaultValue = "0", description = "BEMA's tau: burn-in steps before theta0 is taken (default 0)") int bemaUpdateAfter;
  @Option(names = "--bema-multiplier", defaultValue = "1", description = "BEMA's gamma (default 1)") double bemaMultiplier;
  @Option(names = "--bema-min-ema-multiplier", defaultValue = "0", description = "BEMA's floor on beta (default 0)") double bemaMinEmaMultiplier;

  /** The method --init-adapter's config gave, when no method flag was given; else null, and the flags make one. */
  private PeftMethod adopted;

  @Override
  public Integer call() throws Exception {
    TrainConfig cfg = config();
    if (gradientCheckpointing) {
      // as the launcher does for its own JVM: executors return freed activation blocks to the system
      sparkConf.putIfAbsent("spark.executorEnv.MALLOC_MMAP_THRESHOLD_", "1048576");
    }
    if (sparkUi) {
      Spark.withUiAndMetrics(sparkConf);
    }
    List<Trainer.Named> named = runs == null ? List.of() : runs();
    var pruning = new io.lorafleet.driver.train.Pruning.Settings(pruneAt, keepFraction);
    if (runs == null && !pruneAt.isEmpty()) {
      throw new IllegalArgumentException("--prune-at ranks the runs of a multi-run job (a job file's runs: or grid:) but this job trains one adapter");
    }
    var spark = Spark.session("train", localThreads == null ? workers : localThreads, sparkConf);
    try {
      if (runs == null) {
        var res = Trainer.run(spark, cfg, true);
        System.out.println("adapter written to " + res.publishedAdapter());
        return 0;
      }
      var results = Trainer.run(spark, named, pruning, true);
      io.lorafleet.driver.train.MultiRun.writeTable(out, spark.sparkContext().hadoopConfiguration(), named, results);
      for (int i = 0; i < named.size(); i++) {
        var r = results.get(i);
        System.out.println(String.format("%-24s %-13s %s", named.get(i).name(), r.status(), r.status().equals("diverged") ? r.why() : r.publishedAdapter()));
      }
      System.out.println("runs table written to " + out.replaceAll("/+$", "") + "/" + io.lorafleet.driver.train.MultiRun.TABLE);
      return results.stream().allMatch(r -> r.status().equals("diverged")) ? 1 : 0;
    } finally {
      spark.stop();
    }
  }

  /** The job-level flags a run of a multi-run job may not set. */
  private static final java.util.Set<String> JOB_ONLY = java.util.Set.of("out", "config", "spark", "spark-conf", "spark-ui", "local-threads", "prune-at",
      "keep-fraction", "resume", "overwrite", "no-lock", "runs", "grid");

  /**
   * The runs of a multi-run job: each is these flags with the run's own fields after them (so they
   * override), its output runs/<name>/ under --out, parsed and validated as a train of its own.
   */
  private List<Trainer.Named> runs() {
    com.fasterxml.jackson.databind.JsonNode list;
    try {
      list = new com.fasterxml.jackson.databind.ObjectMapper().readTree(runs);
    } catch (java.io.IOException e) {
      throw new IllegalArgumentException("--runs: not JSON: " + e.getMessage().split("\n")[0]);
    }
    List<String> shared = new java.util.ArrayList<>();
    List<String> given = spec.commandLine().getParseResult().originalArgs(); // the whole command line's: "train" first
    for (int i = given.isEmpty() || !given.get(0).equals(spec.name()) ? 0 : 1; i < given.size(); i++) {
      String a = given.get(i);
      if (a.equals("--runs") || a.equals("--out") || a.equals("--prune-at") || a.equals("--keep-fraction")) {
        i++;
      } else if (!a.startsWith("--runs=") && !a.startsWith("--out=") && !a.startsWith("--prune-at=") && !a.startsWith("--keep-fraction=")) {
        shared.add(a);
      }
    }
    List<Trainer.Named> named = new java.util.ArrayList<>();
    for (com.fasterxml.jackson.databind.JsonNode r : list) {
      com.fasterxml.jackson.databind.node.ObjectNode fields = (com.fasterxml.jackson.databind.node.ObjectNode) r.deepCopy();
      String name = fields.remove("name").asText();
      fields.fieldNames().forEachRemaining(f -> {
        if (JOB_ONLY.contains(f.replace('_', '-'))) {
          throw new IllegalArgumentException("run " + name + " sets '" + f + "', which is the job's: set it at the top of the job file or on the command line");
        }
      });
      TrainCommand one = new TrainCommand();
      picocli.CommandLine cl = new picocli.CommandLine(one);
      cl.setOverwrittenOptionsAllowed(true);
      List<String> args = new java.util.ArrayList<>(shared);
      args.addAll(JobFile.toArgs(fields, "run " + name, cl.getCommandSpec()));
      args.add("--out");
      args.add(out.replaceAll("/+$", "") + "/runs/" + name);
      try {
        cl.parseArgs(args.toArray(String[]::new));
        named.add(new Trainer.Named(name, one.config()));
      } catch (picocli.CommandLine.ParameterException | IllegalArgumentException e) {
        throw new IllegalArgumentException("run " + name + ": " + e.getMessage().split("\n")[0], e);
      }
    }
    return named;
  }

  /** The job these flags describe: --init-adapter's config adopted first, then every setting by name. */
  TrainConfig config() {
    if (!List.of("false", "true", "auto").contains(resume)) {
      throw new IllegalArgumentException("--resume takes no value or 'auto' but found '" + resume + "'");
    }
    adoptInitAdapter();
    return TrainConfig.builder(model, data, out).initAdapter(initAdapter).baseModelId(baseModelId).labels(labels()).tuner(tuner())
        .workers(workers).steps(steps).epochs(epochs).globalBatch(globalBatch).microBatch(microBatch).shuffleWindow(shuffleWindow).seed(seed)
        .optimizer(optimizer).lr(lr).weightDecay(weightDecay).clip(clip).adamBeta1(adamBeta1).adamBeta2(adamBeta2).adamEpsilon(adamEpsilon)
        .loraplusLrRatio(loraplusLrRatio).schedule(schedule).warmup(warmup).warmupRatio(warmupRatio).minLrRate(minLrRate)
        .checkpointEvery(checkpointEvery).keepCheckpoints(keep).resume(!resume.equals("false")).resumeAuto(resume.equals("auto")).overwrite(overwrite).lock(!noLock)
        .timeoutMs(timeoutMs).maxAttempts(maxAttempts).executorWaitMs(executorWaitMs).minWorkers(minWorkers)
        .evalEvery(evalEvery).evalExamples(evalExamples)
        .best(TrainConfig.Selection.of(metricForBestModel, greaterIsBetter, loadBestModelAtEnd, earlyStoppingPatience, earlyStoppingThreshold)).averageLast(averageLast).averageMode(averageMode)
        .emaDecay(emaDecay).averageEvery(averageEvery).mergeWindow(mergeWindow).mergeDecay(mergeDecay)
        .bema(new io.lorafleet.driver.average.Bema(bema, bemaEmaPower, bemaBiasPower, bemaLag, bemaUpdateAfter, bemaMultiplier, bemaMinEmaMultiplier))
        .gradientPorts(gradientPorts).gradTransport(gradTransport).preReduce(preReduce)
        .gradientCheckpointing(gradientCheckpointing).initialLossScale(initialLossScale).quantize(quantize.quantization()).intraOpThreads(intraOpThreads).mixedRuns(mixedRuns)
        .modelDropout(switch (modelDropout) {
          case "on" -> true;
          case "off" -> false;
          default -> throw new IllegalArgumentException("--model-dropout must be on or off but found '" + modelDropout + "'");
        })
        .build();
  }

  /**
   * The adapter this run trains, read from the tuner flags once {@link #adoptInitAdapter()} has filled
   * the ones not given. The method is the adapter's own when no method flag was given (so an adopted
   * VeRA or AdaLoRA adapter trains as itself), else the registered method --peft-type names, made
   * from its own flags.
   */
  /** The classifier's labels: the flags', else an --init-adapter's own, else the base's config.json's. */
  io.lorafleet.worker.model.Labels labels() {
    var given = labelOptions.labels();
    return given.fromConfig() && !initAdapter.isEmpty() ? AdapterFormat.labels(Path.of(initAdapter)) : given;
  }

  LoraConfig tuner() {
    LoraConfig base = LoraConfig.ofTargetModules(r, alpha, targets).withDropout(dropout).withRslora(useRslora).withBias(bias)
        .withPatterns(rankPattern, alphaPattern).withLayers(layersToTransform).withInit(initLoraWeights).withModulesToSave(modulesToSave);
    if (adopted != null) {
      return base.withMethod(adopted);
    }
    var parsed = spec.commandLine().getParseResult();
    java.util.Set<String> given = new java.util.HashSet<>();
    parsed.matchedOptions().forEach(o -> given.add(o.longestName().substring(2)));
    if (!initAdapter.isEmpty()) {
      given.add("r"); // the adapter's
    }
    Map<String, String> values = new LinkedHashMap<>();
    values.put("use-dora", Boolean.toString(useDora));
    values.put("init-r", Integer.toString(initR));
    values.put("target-r", Integer.toString(targetR));
    values.put("tinit", Integer.toString(tinit));
    values.put("tfinal", Integer.toString(tfinal));
    values.put("delta-t", Integer.toString(deltaT));
    values.put("beta1", Double.toString(beta1));
    values.put("beta2", Double.toString(beta2));
    values.put("orth-reg-weight", Double.toString(orthRegWeight));
    values.put("total-step", Integer.toString(totalStep));
    values.put("d-initial", Double.toString(dInitial));
    values.put("projection-prng-key", Long.toString(projectionPrngKey));
    values.put("steps", Integer.toString(steps));
    return PeftMethods.configure(peftType, new PeftMethods.Options(values, given), base);
  }

  /**
   * With --init-adapter, the LoRA flags not given take the adapter's values, so the run trains the
   * adapter's own config; flags given that contradict it are refused by Trainer, by name.
   */
  void adoptInitAdapter() {
    if (initAdapter.isEmpty()) {
      return;
    }
    var parsed = spec.commandLine().getParseResult();
    LoraConfig a = AdapterFormat.readConfig(Path.of(initAdapter));
    if (!parsed.hasMatchedOption("--r")) {
      r = a.r();
    }
    if (!parsed.hasMatchedOption("--lora-alpha")) {
      alpha = a.loraAlpha();
    }
    if (!parsed.hasMatchedOption("--target-modules")) {
      targets = String.join(",", a.targetModules());
    }
    if (!parsed.hasMatchedOption("--use-rslora")) {
      useRslora = a.useRslora();
    }
    if (!parsed.hasMatchedOption("--bias")) {
      bias = a.bias();
    }
    if (!parsed.hasMatchedOption("--peft-type") && !parsed.hasMatchedOption("--use-dora")) { // the adapter's method, with all its settings
      a.method().notContinued().ifPresent(why -> {
        throw new IllegalArgumentException("--init-adapter " + initAdapter + " is " + why);
      });
      adopted = a.method();
    }
    if (!parsed.hasMatchedOption("--rank-pattern")) {
      rankPattern = new LinkedHashMap<>(a.rankPattern());
    }
    if (!parsed.hasMatchedOption("--alpha-pattern")) {
      alphaPattern = new LinkedHashMap<>(a.alphaPattern());
    }
    if (!parsed.hasMatchedOption("--layers-to-transform")) {
      layersToTransform = new java.util.ArrayList<>(a.layersToTransform());
    }
    if (!parsed.hasMatchedOption("--modules-to-save")) {
      modulesToSave = new java.util.ArrayList<>(a.modulesToSave());
    }
  }
}
