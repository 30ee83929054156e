package io.lorafleet.driver.train;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.driver.checkpoint.CheckpointWriter;
import io.lorafleet.driver.checkpoint.Checkpoints;
import io.lorafleet.driver.checkpoint.OutputFailure;
import io.lorafleet.driver.checkpoint.RunFiles;
import io.lorafleet.driver.checkpoint.RunLock;
import io.lorafleet.driver.checkpoint.RunOutput;
import io.lorafleet.driver.executor.FaultPlan;
import io.lorafleet.driver.executor.ModelCache;
import io.lorafleet.driver.executor.ModelFiles;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.BaseModel;
import io.lorafleet.worker.model.ModelSkeleton;
import io.lorafleet.worker.train.NonFiniteGradientException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.spark.sql.SparkSession;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@code lorafleet train}: the driver's loop. It owns the fp32 master adapter and the optimizer,
 * launches one barrier stage of N worker tasks, and every step broadcasts the adapter, gathers the
 * gradient sums, reduces them to the token-weighted mean over the global batch, clips, and updates.
 * A failed barrier stage is not retried by Spark, so the driver relaunches it from the last
 * checkpoint; --max-attempts bounds the failures in a row that pass no new checkpoint. The output is
 * locked for the run, and never mixed with another run's: see {@link RunLock} and --resume/--overwrite.
 */
public final class Trainer {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final Logger LOG = LoggerFactory.getLogger(Trainer.class);
  static final String METRICS = "metrics.jsonl";

  /** The run directory's running averages: --ema-decay's and --bema's adapters. */
  public static final String EMA = RunFiles.EMA;
  public static final String BEMA = RunFiles.BEMA;
  /** --metric-for-best-model's best candidate so far. */
  public static final String BEST = RunFiles.BEST;

  private Trainer() {}

  /**
   * What a run produced: the final adapter's values, the losses, the attempts it took, the final
   * adapter's directory on this machine (for a remote --out, its staged copy) and where it was
   * published, as the user named --out; how it ended and why (a multi-run job's pruned or diverged
   * runs say so).
   */
  public record Result(float[] adapter, List<Double> losses, int attempts, Path finalAdapter, String publishedAdapter, String status, String why) {}

  /** One run of a multi-run job: its name ({@code runs/<name>/}) and its whole configuration. */
  public record Named(String name, TrainConfig cfg) {}

  public static Result run(SparkSession spark, TrainConfig cfg, boolean progress) throws IOException {
    // a plain train's non-finite step fails its stage, and a repeat after the relaunch fails the run: it never ends "diverged"
    return run(spark, List.of(new Named("", cfg)), Pruning.Settings.NONE, progress).get(0);
  }

  /**
   * Trains every run of a job on one base and one set of workers: each run its own adapter, data,
   * optimizer, schedule and output, each step of every active run in turn over one barrier stage.
   * Returns the runs' results in order.
   */
  public static List<Result> run(SparkSession spark, List<Named> named, Pruning.Settings pruning, boolean progress) throws IOException {
    FaultPlan faults = FaultPlan.of(spark.sparkContext());
    io.lorafleet.driver.metrics.TrainingGauges.reset();
    TrainConfig first = named.get(0).cfg();
    MultiRun.checkShared(named);
    ModelSkeleton base = ModelCache.skeleton(first.io().model(), spark.sparkContext().hadoopConfiguration(), first.io().labels()); // config and headers: no weights
    pruning.check(named.stream().map(n -> n.cfg()).toList(), named.stream().map(Named::name).toList());
    List<Prepared> prepared = new ArrayList<>();
    for (Named n : named) {
      prepared.add(prepare(spark, n, base, progress));
    }
    int workers = workersFor(spark, first, false);
    List<RunLock> locks = new ArrayList<>();
    try {
      for (Prepared p : prepared) {
        TrainConfig cfg = p.cfg();
        locks.add(cfg.run().lock() ? RunLock.acquire(p.ro(), cfg.run().resume() || cfg.run().overwrite(), RunLock.STALE_AFTER_MS) : RunLock.none(p.ro()));
      }
      return run(spark, prepared, pruning, progress, faults, base, workers);
    } finally {
      for (RunLock l : locks) {
        l.close();
      }
    }
  }

  /** A run resolved against its data and output before any Spark work: refusals come first, for every run. */
  private record Prepared(String name, TrainConfig cfg, LoraModel lora, ObjectNode job, RunOutput ro, RunDataset.Manifest manifest) {}

  private static Prepared prepare(SparkSession spark, Named n, ModelSkeleton base, boolean progress) throws IOException {
    String prefix = n.name().isEmpty() ? "" : "run " + n.name() + ": ";
    try {
      TrainConfig cfg = n.cfg();
      LoraConfig lc = loraConfig(cfg);
      LoraModel lora = LoraModel.create(base, lc); // fails fast on bad targets
      String model = cfg.io().model();
      if (base.config().raw().hasNonNull("quantization_config")) {
        lc.method().notOverQuantizedBase().ifPresent(why -> {
          throw new IllegalArgumentException(why + " (" + model + " is stored quantized)");
        });
      }
      TrainConfig given = cfg;
      RunDataset.Manifest manifest = RunDataset.Manifest.read(cfg, spark.sparkContext().hadoopConfiguration());
      cfg = RunDataset.check(cfg, manifest, ModelFiles.tokenizerDir(cfg.io().model(), spark.sparkContext().hadoopConfiguration()), base.config());
      if (given.batching().epochs() > 0) {
        say(progress, prefix + given.batching().epochs() + " epochs of " + manifest.rows("train") + " rows at global batch " + cfg.batching().globalBatch()
            + ": " + cfg.batching().steps() + " steps");
      }
      ObjectNode job = RunIdentity.job(cfg, manifest.fingerprint());
      RunOutput ro = RunOutput.of(cfg.io().output(), spark.sparkContext().hadoopConfiguration());
      return new Prepared(n.name(), cfg, lora, job, ro, manifest);
    } catch (IllegalArgumentException e) {
      throw prefix.isEmpty() ? e : new IllegalArgumentException(prefix + e.getMessage(), e);
    }
  }

  private static List<Result> run(SparkSession spark, List<Prepared> prepared, Pruning.Settings pruningSettings, boolean progress, FaultPlan faults,
      ModelSkeleton base, int firstWorkers) throws IOException {
    List<JobRun> runs = new ArrayList<>();
    List<CheckpointWriter> writers = new ArrayList<>();
    List<MetricsLog> logs = new ArrayList<>();
    try {
      for (int i = 0; i < prepared.size(); i++) {
        Prepared p = prepared.get(i);
        TrainConfig cfg = p.cfg();
        Path out = p.ro().local();
        claimOutput(cfg, p.ro());
        TrainingState state = new TrainingState(cfg, p.lora(), initialParams(cfg, p.lora(), base));
        int start = cfg.run().resume() ? resume(cfg, p.ro(), base, p.lora(), p.job(), state, progress) : 0;
        // after the resume check: a refused --resume leaves the run's own configuration in place
        String resolved = ResolvedConfig.yaml(cfg, spark.sparkContext().getConf());
        Files.writeString(out.resolve(ResolvedConfig.FILE), resolved);
        p.ro().publish(ResolvedConfig.FILE);
        CheckpointWriter ckpt = new CheckpointWriter();
        writers.add(ckpt);
        MetricsLog metrics = MetricsLog.open(out.resolve(METRICS), start);
        logs.add(metrics);
        JobRun r = new JobRun(i, p.name(), new Stage.Run(spark, cfg, p.ro(), p.lora(), cfg.lrSchedule(), p.job(), resolved, faults, progress), state,
            new Stage.Log(new ArrayList<>(), new ArrayList<>(), metrics, ckpt), start);
        if (!p.name().isEmpty() && cfg.run().resume()) { // a resumed multi-run job's pruned and diverged runs stay so
          JobRun.endedBefore(out).ifPresent(e -> r.end(e.status(), e.step(), e.why()));
        }
        if (r.active() && (start >= cfg.batching().steps())) {
          r.end(JobRun.Status.FINISHED, start, "");
        }
        runs.add(r);
      }
      int attempts = stages(spark, runs, Pruning.of(pruningSettings, runs), faults, base, firstWorkers, progress);
      for (CheckpointWriter w : writers) {
        w.drain();
      }
      List<Result> results = new ArrayList<>();
      for (int i = 0; i < runs.size(); i++) {
        results.add(finish(runs.get(i), prepared.get(i), base, attempts));
      }
      return results;
    } finally {
      for (MetricsLog m : logs) {
        m.close();
      }
      for (CheckpointWriter w : writers) {
        w.close();
      }
    }
  }

  /**
   * The job's barrier stages: each runs every active run until it is done, or ends at a checkpoint
   * to grow; a failed stage is relaunched with every active run back at its newest checkpoint.
   * Returns the stages it took.
   */
  private static int stages(SparkSession spark, List<JobRun> runs, Pruning pruning, FaultPlan faults, ModelSkeleton base, int firstWorkers,
      boolean progress) throws IOException {
    TrainConfig cfg = runs.get(0).cfg();
    int attempts = 0;
    int withoutProgress = 0;
    int divergedAt = -1;
    int workers = firstWorkers;
    int previous = firstWorkers;
    if (workers < cfg.batching().workers()) {
      say(progress, "starting on " + workers + " of --workers " + cfg.batching().workers() + " (no more executors within --executor-wait-ms); "
          + "the run grows at a checkpoint once they register");
    }
    while (runs.stream().anyMatch(JobRun::active)) {
      attempts++;
      List<JobRun> active = runs.stream().filter(JobRun::active).toList();
      java.util.Map<JobRun, Integer> from = new java.util.HashMap<>();
      active.forEach(r -> from.put(r, r.next));
      try {
        new Stage(spark, active, faults, attempts, new Stage.Workers(workers, previous, () -> taskSlotsNow(spark)), pruning).run();
        previous = workers;
        if (runs.stream().anyMatch(JobRun::active)) { // the stage ended at a checkpoint to grow: the state is in memory
          workers = workersFor(spark, cfg, true);
          say(progress, "growing from " + previous + " to " + workers + " workers at " + (active.size() == 1 ? "step " + active.get(0).next
              : "each run's checkpoint"));
        }
      } catch (OutputFailure e) {
        throw e;
      } catch (IOException | RuntimeException e) {
        boolean advanced = false;
        int failedStep = active.get(0).first + active.get(0).log.losses().size();
        int resumeAt = 0;
        for (JobRun r : active) {
          int at = r.rollBack(base, () -> initialParams(r.cfg(), r.run.lora(), base));
          advanced |= at > from.get(r);
          resumeAt = r == active.get(0) ? at : resumeAt;
        }
        // the budget counts failures in a row that passed no new checkpoint: a long run survives any number of preemptions
        withoutProgress = advanced ? 1 : withoutProgress + 1;
        divergedAt = checkRelaunch(cfg, e, failedStep, divergedAt, resumeAt, withoutProgress, attempts);
        String where = active.size() == 1 ? "the last checkpoint (step " + resumeAt + ")" : "each run's last checkpoint";
        say(progress, "training stage failed (" + e.getMessage() + "); relaunching from " + where);
        LOG.warn("training stage failed ({}); relaunching from {}", e.getMessage(), where);
        previous = workers;
        workers = workersFor(spark, cfg, true);
        if (workers < cfg.batching().workers()) {
          requestExecutors(spark, cfg);
        }
        if (workers != previous) {
          say(progress, "continuing on " + workers + " workers (was " + previous + ", --min-workers " + cfg.minWorkers() + ") from "
              + (active.size() == 1 ? "step " + resumeAt : where)
              + " instead of waiting for replacements; the run grows back at a checkpoint once executors return");
        }
      }
    }
    return attempts;
  }

  /** A run's final outputs, published, and its result. */
  private static Result finish(JobRun r, Prepared p, ModelSkeleton base, int attempts) throws IOException {
    TrainConfig cfg = r.cfg();
    RunOutput ro = p.ro();
    Path out = ro.local();
    List<Double> losses = r.log.losses();
    List<double[]> valLosses = r.log.valLosses();
    // a diverged run's last values are not an adapter anyone asked for: it keeps its checkpoints and says why it stopped
    Path fin = r.status == JobRun.Status.DIVERGED ? out.resolve("adapter")
        : finish(cfg, base, p.lora(), r.state, ro, p.manifest(), valLosses, r.status == JobRun.Status.FINISHED ? cfg.batching().steps() : r.endedAt);
    writeSummary(out, cfg, losses, valLosses, attempts, r.state.params.length, base.parameterCount(), r);
    for (String f : List.of("adapter", "averaged", EMA, BEMA, BestModel.DIR, "loss.svg", METRICS, "run_summary.json")) {
      ro.publish(f);
    }
    return new Result(r.state.params, losses, attempts, fin, ro.isStaged() ? ro.uri().replaceAll("/+$", "") + "/adapter" : fin.toString(),
        r.status.word, r.why);
  }

  /** Refuses an --out that holds something unless --resume or --overwrite says what to do with it; clears it for --overwrite. */
  private static void claimOutput(TrainConfig cfg, RunOutput ro) throws IOException {
    List<String> held = new ArrayList<>(ro.entries());
    held.remove(RunLock.FILE);
    if (cfg.run().overwrite()) {
      ro.clear(RunLock.FILE);
    } else if (!held.isEmpty() && !cfg.run().resume()) {
      throw new IllegalArgumentException("--out " + ro.uri() + " already holds " + String.join(", ", held.subList(0, Math.min(6, held.size())))
          + (held.size() > 6 ? ", ..." : "") + "; pass --resume to continue that run, --overwrite to replace it, or choose another --out");
    }
    ro.cleanTemporaries();
  }

  /** --resume: restores the newest valid checkpoint that belongs to this job and returns its step (0 with --resume=auto and none). */
  private static int resume(TrainConfig cfg, RunOutput ro, ModelSkeleton base, LoraModel lora, ObjectNode job, TrainingState state, boolean progress)
      throws IOException {
    ro.pullCheckpoints();
    ro.pull(METRICS);
    var st = Checkpoints.latestValid(ro.local(), base);
    if (st.isEmpty()) {
      if (!cfg.run().resumeAuto()) {
        throw new IllegalArgumentException("--resume: " + ro.uri() + " holds no valid checkpoint to continue; pass --resume=auto to start "
            + "afresh when there is none");
      }
      return 0;
    }
    RunIdentity.check(st.get(), lora.config(), job);
    state.restore(st.get());
    say(progress, "resuming from " + st.get().dir());
    return st.get().step();
  }

  /**
   * Whether a failed stage may be relaunched: not when the same step gave a non-finite gradient
   * again after a relaunch (the run diverged), nor past --max-attempts failures without a new
   * checkpoint. Returns the step that failed non-finite (-1 for any other failure).
   */
  private static int checkRelaunch(TrainConfig cfg, Exception e, int failedStep, int divergedAt, int resumeAt, int withoutProgress, int attempts)
      throws IOException {
    boolean nonFinite = e instanceof NonFiniteGradientException;
    if (nonFinite && failedStep == divergedAt) {
      throw new IOException("training diverged: step " + failedStep + " gave a non-finite gradient again after a relaunch from step " + resumeAt
          + " (" + e.getMessage() + "); lower the learning rate or check the data", e);
    }
    if (withoutProgress >= cfg.run().maxAttempts()) {
      throw new IOException("training failed after " + withoutProgress + " attempts without a new checkpoint (" + attempts + " in all); last error: "
          + e.getMessage(), e);
    }
    return nonFinite ? failedStep : -1;
  }

  /**
   * The final adapter (AdaLoRA's cut to its kept ranks, as PEFT saves it), its model card,
   * --average-last's average, and the running averages (--ema-decay: ema/, --bema: bema/), each a
   * PEFT adapter with its model card (AdaLoRA's cut to the final allocation's ranks too).
   */
  private static Path finish(TrainConfig cfg, ModelSkeleton base, LoraModel lora, TrainingState state, RunOutput ro, RunDataset.Manifest manifest,
      List<double[]> valLosses, int last) throws IOException {
    Path out = ro.local();
    Path fin = out.resolve("adapter");
    Map<String, String> meta = Map.of("lorafleet.step", Integer.toString(last));
    if (cfg.eval().best().loadAtEnd() && state.best.any()) { // load_best_model_at_end: adapter/ is best/
      AdapterFormat.Loaded best = AdapterFormat.read(out.resolve(BestModel.DIR), base);
      AdapterFormat.write(fin, best.model(), best.values(), Map.of("lorafleet.step", Integer.toString(state.best.step()),
          "lorafleet.best_candidate", state.best.candidate()));
    } else if (cfg.lrSchedule().merges()) { // WSM: the merge of the last checkpoints, not the last step (which checkpoint-<steps> keeps)
      var merged = combineLast(cfg, base, out, cfg.averaging().mergeWindow(), cfg.averaging().mergeWeights(cfg.averaging().mergeWindow()));
      Map<String, String> m = new java.util.TreeMap<>(merged.metadata());
      m.putAll(meta);
      AdapterFormat.write(fin, merged.model(), merged.values(), m);
    } else {
      LoraModel.Values saved = state.ranks.map(r -> r.finalAdapter(state.params)).orElse(new LoraModel.Values(lora, state.params));
      AdapterFormat.write(fin, saved.model(), saved.values(), meta);
    }
    ModelCard.write(fin, cfg, lora.config(), manifest.json(), manifest.fingerprint(), valLosses);
    if (cfg.averaging().last() > 0) {
      averageLast(cfg, base, out);
      ModelCard.write(out.resolve("averaged"), cfg, lora.config(), manifest.json(), manifest.fingerprint(), valLosses);
    }
    Map<String, Optional<float[]>> running = new java.util.LinkedHashMap<>();
    running.put(EMA, state.averages.ema());
    running.put(BEMA, state.averages.bema(state.params));
    for (Map.Entry<String, Optional<float[]>> a : running.entrySet()) {
      if (a.getValue().isPresent()) {
        float[] values = a.getValue().get();
        LoraModel.Values v = state.ranks.map(r -> r.finalAdapter(values)).orElse(new LoraModel.Values(lora, values));
        AdapterFormat.write(out.resolve(a.getKey()), v.model(), v.values(), Map.of("lorafleet.step", Integer.toString(last),
            "lorafleet.average", a.getKey()));
        ModelCard.write(out.resolve(a.getKey()), cfg, lora.config(), manifest.json(), manifest.fingerprint(), valLosses);
      }
    }
    return fin;
  }

  /** loss.svg and run_summary.json: the run's steps, how it ended and why. */
  private static void writeSummary(Path out, TrainConfig cfg, List<Double> losses, List<double[]> valLosses, int attempts, int trainable,
      long baseParameters, JobRun r) throws IOException {
    plot(out, losses, valLosses);
    ObjectNode summary = JSON.createObjectNode();
    summary.put("steps", cfg.batching().steps());
    summary.put("status", r.status.word);
    if (r.status != JobRun.Status.FINISHED) {
      summary.put("ended_at_step", r.endedAt);
      summary.put("why", r.why);
    }
    if (!valLosses.isEmpty()) {
      summary.put("val_loss", valLosses.get(valLosses.size() - 1)[1]);
    }
    summary.put("workers", cfg.batching().workers());
    summary.put("attempts", attempts);
    summary.put("final_loss", losses.isEmpty() ? Double.NaN : losses.get(losses.size() - 1));
    summary.put("trainable_parameters", trainable);
    summary.put("base_parameters", baseParameters);
    Files.writeString(out.resolve("run_summary.json"), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(summary));
  }

  /** The adapter at step 0: PEFT's init, or --init-adapter for continued training. */
  private static float[] initialParams(TrainConfig cfg, LoraModel lora, BaseModel base) {
    return cfg.io().initAdapter().isEmpty() ? lora.initialParams(cfg.batching().seed()) : AdapterFormat.read(Path.of(cfg.io().initAdapter()), base).values();
  }

  /**
   * The LoRA config this run trains: the flags', or with --init-adapter that adapter's own (r, alpha,
   * patterns, rsLoRA, bias, targets), so that its learned update keeps its meaning. Flags that
   * contradict the adapter are refused by name (the CLI fills the ones not given from the adapter).
   */
  private static void differ(List<String> diffs, String flag, Object given, String field, Object adapter) {
    if (!java.util.Objects.equals(given, adapter)) {
      diffs.add(flag + " " + given + " but the adapter has " + field + " " + adapter);
    }
  }

  static LoraConfig loraConfig(TrainConfig cfg) {
    if (cfg.io().initAdapter().isEmpty()) {
      return cfg.lora();
    }
    LoraConfig a = AdapterFormat.readConfig(Path.of(cfg.io().initAdapter()));
    LoraConfig flags = cfg.lora();
    List<String> diffs = new ArrayList<>();
    if (flags.r() != a.r()) {
      diffs.add("--r " + flags.r() + " but the adapter has r " + a.r());
    }
    if (flags.loraAlpha() != a.loraAlpha()) {
      diffs.add("--lora-alpha " + flags.loraAlpha() + " but the adapter has lora_alpha " + a.loraAlpha());
    }
    if (!new java.util.HashSet<>(flags.targetModules()).equals(new java.util.HashSet<>(a.targetModules()))) {
      diffs.add("--target-modules " + String.join(",", flags.targetModules()) + " but the adapter targets " + String.join(",", a.targetModules()));
    }
    differ(diffs, "--use-rslora", flags.useRslora(), "use_rslora", a.useRslora());
    differ(diffs, "--bias", flags.bias(), "bias", a.bias());
    differ(diffs, "--peft-type", flags.method().name(), "method", a.method().name());
    differ(diffs, "--rank-pattern", flags.rankPattern(), "rank_pattern", a.rankPattern());
    differ(diffs, "--alpha-pattern", flags.alphaPattern(), "alpha_pattern", a.alphaPattern());
    differ(diffs, "--layers-to-transform", flags.layersToTransform(), "layers_to_transform", a.layersToTransform());
    if (!diffs.isEmpty()) {
      throw new IllegalArgumentException("--init-adapter " + cfg.io().initAdapter() + " contradicts the flags: " + String.join("; ", diffs)
          + ". Drop those flags to adopt the adapter's config");
    }
    return a.withDropout(flags.loraDropout()).withBaseModel(cfg.baseModelName());
  }

  /**
   * A shrunk run asks the cluster manager for the executors --workers needs (Spark's
   * requestTotalExecutors, which sets the application's executor target; dynamic allocation stays
   * off). Cluster managers replace lost executors on their own too; this states the target, and a
   * manager that takes no requests is only logged.
   */
  static void requestExecutors(SparkSession spark, TrainConfig cfg) {
    var sc = spark.sparkContext();
    if (sc.isLocal()) {
      return;
    }
    int perExecutor = taskSlotsPerExecutor(spark);
    int executors = (cfg.batching().workers() + perExecutor - 1) / perExecutor;
    try {
      if (!sc.requestTotalExecutors(executors, 0, scala.collection.immutable.Map$.MODULE$.empty())) {
        LOG.warn("the cluster manager did not take a request for {} executors; the run grows when it replaces the lost ones", executors);
      }
    } catch (RuntimeException e) {
      LOG.warn("could not ask the cluster manager for {} executors ({}); the run grows when it replaces the lost ones", executors, e.toString());
    }
  }

  /**
   * How many task slots the application has now for one barrier stage (which needs them all at
   * once): a local master's fixed count; on a cluster, the registered executors times
   * spark.executor.cores / spark.task.cpus each (1 if unset).
   */
  static int taskSlotsNow(SparkSession spark) {
    var sc = spark.sparkContext();
    if (sc.isLocal()) {
      return sc.defaultParallelism();
    }
    return (sc.statusTracker().getExecutorInfos().length - 1) * taskSlotsPerExecutor(spark); // the driver is listed too
  }

  /** The task slots an executor is assumed to hold: spark.executor.cores / spark.task.cpus (1 if unset). */
  private static int taskSlotsPerExecutor(SparkSession spark) {
    var conf = spark.sparkContext().getConf();
    return Math.max(1, conf.getInt("spark.executor.cores", 1) / conf.getInt("spark.task.cpus", 1));
  }

  /**
   * The workers the next barrier stage runs on. The first stage waits up to --executor-wait-ms for
   * --workers slots (executors register after the application starts). A relaunch after a lost
   * executor, or a stage that grows, takes at once what there is when that is at least
   * --min-workers; otherwise it waits for that many. Local masters have a fixed slot count.
   */
  static int workersFor(SparkSession spark, TrainConfig cfg, boolean relaunch) {
    int want = cfg.batching().workers();
    int least = relaunch ? cfg.minWorkers() : want;
    if (spark.sparkContext().isLocal()) {
      int slots = taskSlotsNow(spark);
      if (Math.min(want, slots) < least) {
        throw new IllegalArgumentException("--workers " + want + " exceeds the " + slots + " task slots of this Spark application");
      }
      return Math.min(want, slots);
    }
    long deadline = System.currentTimeMillis() + cfg.run().executorWaitMs();
    while (true) {
      int slots = taskSlotsNow(spark);
      if (slots >= least) {
        return Math.min(want, slots);
      }
      if (System.currentTimeMillis() > deadline) {
        if (slots >= cfg.minWorkers()) { // past the wait at launch: start on what there is, and grow later
          return slots;
        }
        int perExecutor = taskSlotsPerExecutor(spark);
        int needed = (least + perExecutor - 1) / perExecutor;
        throw new IllegalArgumentException("--" + (least == want ? "workers " : "min-workers ") + least + " needs " + needed
            + " executors but only " + slots / perExecutor + " registered within --executor-wait-ms " + cfg.run().executorWaitMs());
      }
      try {
        Thread.sleep(200);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IllegalStateException(e);
      }
    }
  }

  /** --average-last K: the last K checkpoints combined into averaged/ (svd keeps the run's rank). */
  static void averageLast(TrainConfig cfg, BaseModel base, Path out) throws IOException {
    double[] w = new double[cfg.averaging().last()];
    java.util.Arrays.fill(w, 1);
    var r = combineLast(cfg, base, out, cfg.averaging().last(), w);
    AdapterFormat.write(out.resolve("averaged"), r.model(), r.values(), r.metadata());
  }

  /** The last {@code k} checkpoints of the run in {@code out}, combined with {@code weights} (oldest first) as --average-mode says. */
  static io.lorafleet.driver.average.AdapterAverager.Result combineLast(TrainConfig cfg, BaseModel base, Path out, int k, double[] weights)
      throws IOException {
    List<Path> all = Checkpoints.list(out);
    List<Path> last = all.subList(Math.max(0, all.size() - k), all.size());
    List<io.lorafleet.driver.average.AdapterAverager.Source> src = new ArrayList<>();
    for (Path p : last) {
      src.add(new io.lorafleet.driver.average.AdapterAverager.Source(p.getFileName().toString(), AdapterFormat.read(p, base)));
    }
    double[] w = java.util.Arrays.copyOfRange(weights, weights.length - src.size(), weights.length);
    return io.lorafleet.driver.average.AdapterAverager.combine(base, src, w, true, cfg.averaging().mode(), cfg.tuner().r());
  }

  static void plot(Path out, List<Double> losses, List<double[]> val) throws IOException {
    List<io.lorafleet.driver.report.SvgPlot.Series> series = new ArrayList<>();
    double[] x = new double[losses.size()];
    double[] y = new double[losses.size()];
    for (int i = 0; i < x.length; i++) {
      x[i] = i + 1;
      y[i] = losses.get(i);
    }
    series.add(new io.lorafleet.driver.report.SvgPlot.Series("train loss", x, y, "#1f77b4"));
    if (!val.isEmpty()) {
      series.add(new io.lorafleet.driver.report.SvgPlot.Series("validation loss", val.stream().mapToDouble(v -> v[0]).toArray(),
          val.stream().mapToDouble(v -> v[1]).toArray(), "#ff7f0e"));
    }
    io.lorafleet.driver.report.SvgPlot.write(out.resolve("loss.svg"), "Training loss", "step", "loss (target tokens)", series, List.of());
  }

  private static void say(boolean progress, String s) {
    if (progress) {
      io.lorafleet.driver.report.Progress.say(s);
    }
  }
}
