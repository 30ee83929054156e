package io.lorafleet.driver.train;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.driver.allreduce.GradientServer;
import io.lorafleet.driver.allreduce.PortRange;
import io.lorafleet.driver.allreduce.Transport;
import io.lorafleet.driver.checkpoint.CheckpointWriter;
import io.lorafleet.driver.checkpoint.Checkpoints;
import io.lorafleet.driver.checkpoint.OutputFailure;
import io.lorafleet.driver.checkpoint.RunOutput;
import io.lorafleet.driver.executor.FaultPlan;
import io.lorafleet.driver.executor.WorkerJob;
import io.lorafleet.driver.executor.WorkerTask;
import io.lorafleet.driver.kernels.Kernels;
import io.lorafleet.driver.optim.AdamW;
import io.lorafleet.driver.optim.LossScaler;
import io.lorafleet.driver.optim.RankAllocator;
import io.lorafleet.driver.optim.Schedule;
import io.lorafleet.worker.flat.FlatLayout;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.train.NonFiniteGradientException;
import java.io.IOException;
import java.security.SecureRandom;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.FutureTask;
import java.util.concurrent.TimeUnit;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.rdd.RDD;
import org.apache.spark.sql.SparkSession;
import scala.reflect.ClassTag$;

/**
 * One barrier stage of a run: N worker tasks and the driver's step loop over the gradient channel.
 * Each step the driver broadcasts the adapter, gathers the gradient sums, reduces them to the
 * token-weighted mean over the global batch, clips, updates, logs the step and, every
 * checkpoint-every steps, hands a snapshot to the checkpoint writer. Any failure ends the stage;
 * {@link Trainer} decides whether to relaunch.
 */
final class Stage {
  private static final ObjectMapper JSON = new ObjectMapper();

  private final SparkSession spark;
  private final TrainConfig cfg;
  private final RunOutput ro;
  private final LoraModel lora;
  private final float[] params;
  private final AdamW opt;
  private final Schedule sched;
  private final List<Double> losses;
  private final List<double[]> valLosses;
  private final MetricsLog metrics;
  private final CheckpointWriter ckpt;
  private final boolean progress;
  private final FaultPlan faults;
  private final int attempt;
  /** This stage's workers, and the stage before's (the same unless the run shrank or grew). */
  private final int workers;
  private final int previousWorkers;
  /** How many workers the cluster could run now: a shrunk stage ends at a checkpoint once more could. */
  private final java.util.function.IntSupplier workersAvailable;
  private final ObjectNode job;
  private final LossScaler scaler;
  /** AdaLoRA's allocation, which runs on the driver after each optimizer step. */
  private final Optional<RankAllocator> ranks;
  /** The run's state, whose running averages and checkpoint tensors the stage updates and saves. */
  private final TrainingState state;
  /** train_config.yaml: the run's resolved configuration, written into every checkpoint. */
  private final String resolvedConfig;

  /**
   * What stays fixed for the whole run, whichever stage runs it.
   *
   * @param job trainer_state.json's "job": what a checkpoint must share with the job that continues it
   * @param resolvedConfig train_config.yaml, written into every checkpoint
   */
  record Run(SparkSession spark, TrainConfig cfg, RunOutput ro, LoraModel lora, Schedule sched, ObjectNode job, String resolvedConfig,
      FaultPlan faults, boolean progress) {}

  /**
   * How many workers a stage runs on ({@code count}), how many the stage before it ran on, and how
   * many the cluster could run now, asked at each checkpoint while {@code count} is below --workers.
   */
  record Workers(int count, int previous, java.util.function.IntSupplier available) {}

  /** What the run's stages write in turn: the step losses, the validation losses, metrics.jsonl and the checkpoints. */
  record Log(List<Double> losses, List<double[]> valLosses, MetricsLog metrics, CheckpointWriter ckpt) {}

  /** A stage of {@code run} from {@code state} on {@code workers}, the {@code attempt}-th barrier stage of the run (fault plans name it). */
  Stage(Run run, Log log, TrainingState state, int attempt, Workers workers) {
    this.spark = run.spark();
    this.cfg = run.cfg();
    this.ro = run.ro();
    this.lora = run.lora();
    this.sched = run.sched();
    this.job = run.job();
    this.resolvedConfig = run.resolvedConfig();
    this.faults = run.faults();
    this.progress = run.progress();
    this.losses = log.losses();
    this.valLosses = log.valLosses();
    this.metrics = log.metrics();
    this.ckpt = log.ckpt();
    this.params = state.params;
    this.opt = state.opt;
    this.scaler = state.scaler;
    this.ranks = state.ranks;
    this.state = state;
    this.attempt = attempt;
    this.workers = workers.count();
    this.previousWorkers = workers.previous();
    this.workersAvailable = workers.available();
  }

  /**
   * The address the gradient channel listens on: spark.driver.bindAddress if set (as Spark's own
   * driver endpoints do), else spark.driver.host, which is also where workers connect.
   */
  static String[] addresses(org.apache.spark.SparkConf conf) {
    String host = conf.get("spark.driver.host", "127.0.0.1");
    return new String[] {conf.get("spark.driver.bindAddress", host), host};
  }

  /** What the workers need of this job, and nothing else: shipped to every task. */
  private WorkerJob workerJob(String host, int port, String jobId, byte[] secret) {
    var b = cfg.batching();
    return new WorkerJob(
        new WorkerJob.Base(cfg.io().model(), cfg.compute().quantize(), cfg.compute().gradientCheckpointing(), cfg.io().labels(),
            cfg.compute().modelDropout(), intraOpThreads()),
        lora.config(),
        new WorkerJob.Data(cfg.io().data(), job.get("dataset_fingerprint").asText(), workers, b.steps(), b.globalBatch(), b.microBatch(),
            b.shuffleWindow(), b.seed(), cfg.eval().examples(), cfg.eval().best().generates(), new io.lorafleet.driver.eval.EvalScorer()),
        new WorkerJob.Channel(host, port, jobId, secret, cfg.channel().transport(), cfg.channel().preReduce().equals("executor"),
            cfg.run().timeoutMs()),
        faults, attempt);
  }

  /** --intra-op-threads, or spark.task.cpus (the cores each task is given) when it is 0. */
  private int intraOpThreads() {
    int t = cfg.compute().intraOpThreads();
    return t > 0 ? t : spark.sparkContext().getConf().getInt("spark.task.cpus", 1);
  }

  /** Runs steps [start, steps); returns the step reached. */
  int run(int start) throws IOException {
    byte[] secret = new byte[32];
    new SecureRandom().nextBytes(secret);
    String jobId = UUID.randomUUID().toString();
    String[] addr = addresses(spark.sparkContext().getConf());
    FlatLayout layout = lora.layout();
    int slots = io.lorafleet.driver.executor.GlobalBatch.slots(cfg.batching().globalBatch(), cfg.batching().microBatch());
    try (GradientServer server = new GradientServer(addr[0], PortRange.parse(cfg.channel().ports()), jobId, secret, slots, cfg.run().timeoutMs(),
        i -> tensorAt(layout, i), Transport.parse(cfg.channel().transport()))) {
      JavaSparkContext jsc = JavaSparkContext.fromSparkContext(spark.sparkContext());
      RDD<String> ranks = jsc.parallelize(java.util.stream.IntStream.range(0, workers).boxed().toList(), workers)
          .rdd().barrier().mapPartitions(new WorkerTask(workerJob(addr[1], server.port(), jobId, secret), spark.sparkContext().hadoopConfiguration()),
              false, ClassTag$.MODULE$.apply(String.class));
      ranks.setName("lorafleet barrier stage: gradient workers");
      // A thread of its own inherits the job group (Spark local properties are inheritable), so a
      // failed step can cancel exactly this stage and wait for its slots to free up.
      String group = "lorafleet-train-" + jobId;
      jsc.setJobGroup(group, "lorafleet train: " + workers + " LoRA workers, steps " + start + ".." + cfg.batching().steps(), true);
      FutureTask<Object> stage = new FutureTask<>(ranks::collect);
      Thread runner = new Thread(stage, "lorafleet-barrier-stage");
      runner.setDaemon(true);
      runner.start();
      jsc.clearJobGroup();
      try {
        return steps(start, server, stage);
      } catch (IOException | RuntimeException e) {
        jsc.cancelJobGroup(group);
        try {
          stage.get(cfg.run().timeoutMs(), TimeUnit.MILLISECONDS);
        } catch (Exception ignored) {
          // the stage failed or was cancelled: that is what we waited for
        }
        throw e;
      }
    }
  }

  /** trainer_state.json's fields beyond lorafleet's: transformers' global_step, max_steps and log_history, and AdaLoRA's allocation. */
  private ObjectNode hfState(int done) throws IOException {
    ObjectNode n = ranks.map(RankAllocator::checkpointState).orElse(JSON.createObjectNode());
    state.best.write(n, ro.uri().replaceAll("/+$", ""));
    n.put("global_step", done);
    n.put("max_steps", cfg.batching().steps());
    n.set("log_history", metrics.logHistory(done));
    return n;
  }

  /** Whether the progress line goes to a terminal; otherwise (a cluster's log, a pipe) it is printed as whole lines. */
  private static final boolean TERMINAL = System.console() != null;

  /** Steps between progress lines in a log: about 20 lines a run. */
  static int logEvery(int steps) {
    return Math.max(1, steps / 20);
  }

  static String tensorAt(FlatLayout layout, int i) {
    for (FlatLayout.Slot s : layout.slots()) {
      if (i >= s.offset() && i < s.offset() + s.size()) {
        return s.key();
      }
    }
    return "element " + i;
  }

  /** ": <why the stage failed>" when the stage's job has failed (the task's own exception line), else "". */
  static String failure(FutureTask<Object> job) {
    if (!job.isDone()) {
      return "";
    }
    try {
      job.get();
      return "";
    } catch (ExecutionException e) {
      return reason(String.valueOf(e.getCause().getMessage()));
    } catch (Exception e) {
      return "";
    }
  }

  /** A thrown class's line in a task failure's text: "pkg.SomeException: why" or "pkg.SomeError: why". */
  private static final java.util.regex.Pattern THROWN = java.util.regex.Pattern.compile("([\\w$.]+(?:Exception|Error)): (.*)");

  /**
   * ": <why>" from the text Spark gives for a failed job: the first thrown exception's or error's own
   * message (an UnsatisfiedLinkError in a task is as much the cause as an exception), not Spark's wrapper.
   */
  static String reason(String message) {
    for (String line : message.split("\n")) {
      java.util.regex.Matcher m = THROWN.matcher(line);
      if (m.find() && !m.group(1).endsWith("SparkException")) {
        return ": " + m.group(2).trim();
      }
    }
    return ": " + message.split("\n")[0];
  }

  /** The stage's first step (metrics name a resize there). */
  private int firstStep = -1;

  /** The step loop: each step reads top to bottom as exchange, update, record, report, snapshot. */
  private int steps(int start, GradientServer server, FutureTask<Object> stage) throws IOException {
    firstStep = start;
    connect(server, stage);
    state.averages.startAt(start, params); // after connect: DoRA's magnitudes are the base's by now
    long t0 = System.nanoTime();
    int step = start;
    for (; step < cfg.batching().steps(); step++) {
      ckpt.check();
      if (stage.isDone()) {
        throw new IOException("the barrier stage ended before step " + step + failure(stage));
      }
      long ts = System.nanoTime();
      long bytesBefore = server.bytesSent() + server.bytesReceived();
      GradientServer.Gathered g = exchange(server, stage, step);
      long tc = System.nanoTime();
      double scale = scaler.scale(); // the scale this step's gradients were computed under
      double lr = sched.lr(step);
      double norm = update(g, step, scale, lr);
      state.averages.afterStep(step + 1, params);
      long to = System.nanoTime();
      ObjectNode m = metricsLine(step, g, scale, lr, norm, new long[] {ts, tc, to}, server.bytesSent() + server.bytesReceived() - bytesBefore);
      validate(server, step, m);
      record(step, m);
      int done = step + 1;
      report(done, done - start, m.get("loss").asDouble(), g, (System.nanoTime() - t0) / 1e9, (to - ts) / 1e9);
      boolean stop = state.best.stop();
      if (done % cfg.run().checkpointEvery() == 0 || done == cfg.batching().steps() || stop) {
        snapshot(done);
        if (!stop && done < cfg.batching().steps() && workers < cfg.batching().workers() && workersAvailable.getAsInt() > workers) {
          // grown back: this stage ends here, between stages, and the next one runs from this step on the workers there are now
          io.lorafleet.driver.report.Progress.say("executors returned: ending the " + workers + "-worker stage at checkpoint " + done
              + " to grow (the update does not depend on the worker count)");
          step = done;
          break;
        }
      }
      if (stop) { // EarlyStoppingCallback: the run ends here, its last step checkpointed
        state.stoppedAt = done;
        io.lorafleet.driver.report.Progress.say("early stopping at step " + done + ": " + cfg.eval().best().patience()
            + " evaluations without improving " + cfg.eval().best().metric() + " by more than " + cfg.eval().best().threshold() + " (best "
            + state.best.metric() + ", " + state.best.candidate() + " at step " + state.best.step() + ")");
        step = done;
        break;
      }
    }
    server.finish();
    if (progress && TERMINAL) {
      System.out.println();
    }
    try {
      stage.get();
    } catch (Exception e) {
      throw new IOException("barrier stage failed: " + e.getMessage(), e);
    }
    return step;
  }

  /** Waits for every worker's connection; values only the base gives come from rank 0, which holds it. */
  private void connect(GradientServer server, FutureTask<Object> stage) throws IOException {
    try {
      server.awaitWorkers(stage::isDone);
    } catch (IOException e) {
      throw new IOException(e.getMessage() + failure(stage), e);
    }
    if (lora.needsBaseValues(params)) { // DoRA's magnitudes: rank 0 computes them from the base's weights, which the driver lacks
      lora.takeBaseValues(params, server.initialize(params));
    }
  }

  /** One step's exchange; a worker that dropped its connection is failing its task, so Spark is asked why. */
  private GradientServer.Gathered exchange(GradientServer server, FutureTask<Object> stage, int step) throws IOException {
    try {
      return server.exchange(step, params, scaler.scale());
    } catch (IOException e) { // a non-finite push is no IOException: it fails the stage as it is
      try {
        stage.get(cfg.run().timeoutMs(), TimeUnit.MILLISECONDS);
      } catch (Exception ignored) {
        // failure() reads it below
      }
      throw new IOException(e.getMessage() + failure(stage), e);
    }
  }

  /**
   * The driver's update from the gathered sum: the loss scaler learns of an overflow, then (unless
   * an fp16 overflow skips the step, as torch's GradScaler does) AdaLoRA's orthogonal regularization,
   * the clip and the optimizer step. Returns the gradient norm before clipping (NaN when skipped).
   */
  private double update(GradientServer.Gathered g, int step, double scale, double lr) {
    if (g.scaled()) {
      scaler.update(g.overflow());
    }
    if (g.overflow()) {
      return Double.NaN;
    }
    // the mean gradient is sum·mean, unscaled before clipping as GradScaler.unscale_ does
    double mean = g.tokens() == 0 ? 0 : (g.scaled() ? 1.0 / scale : 1.0) / g.tokens();
    double squares = g.sumSquares();
    if (ranks.isPresent() && mean > 0) { // AdaLoRA's orthogonal regularization, added once, here, to the mean gradient
      ranks.get().addOrthogonalRegularization(params, g.sum(), (float) mean);
      squares = Kernels.sumSquares(g.sum());
    }
    double norm = Math.sqrt(squares) * mean;
    if (!Double.isFinite(norm)) {
      throw new NonFiniteGradientException("step " + step + ": the reduced gradient overflowed fp32 (norm " + norm + "); the step is not applied");
    }
    float clip = AdamW.clipCoefficient(norm, cfg.optimization().clip());
    opt.step(params, g.sum(), (float) mean, clip, lr);
    if (ranks.isPresent()) { // importance from the step's own (clipped) gradient and the updated values, as PEFT after optimizer.step()
      ranks.get().afterStep(params, g.sum(), (float) mean * clip, step);
    }
    return norm;
  }

  /**
   * metrics.jsonl's line for a step; {@code nanos} holds when the step started, when its exchange
   * ended and when its update ended.
   */
  private ObjectNode metricsLine(int step, GradientServer.Gathered g, double scale, double lr, double norm, long[] nanos, long bytes) {
    double loss = g.tokens() == 0 ? 0 : g.lossSum() / g.tokens();
    losses.add(loss);
    ObjectNode m = JSON.createObjectNode();
    m.put("step", step + 1);
    m.put("loss", loss);
    m.put("lr", lr);
    m.put("grad_norm", norm);
    m.put(classifier() ? "examples" : "tokens", g.tokens()); // what the loss is averaged over: target tokens, or a classifier's rows
    m.put("input_tokens", g.inputTokens()); // what the model read: every row's tokens, padding excluded
    if (g.overflow()) {
      m.put("skipped", true);
    }
    if (g.scaled()) {
      m.put("loss_scale", scale);
    }
    long exchange = nanos[1] - nanos[0];
    m.put("step_ms", (nanos[2] - nanos[0]) / 1e6);
    m.put("exchange_ms", exchange / 1e6);
    // the slowest worker's forward+backward; the rest of the exchange is the channel's cost
    m.put("compute_ms", g.computeNanos() / 1e6);
    m.put("communication_ms", Math.max(0, exchange - g.computeNanos()) / 1e6);
    m.put("optimizer_ms", (nanos[2] - nanos[1]) / 1e6);
    m.put("reduce_ms", g.reduceNanos() / 1e6); // summed over the I/O threads that reduced chunks, inside exchange_ms
    m.put("pushes", g.pushes());
    m.put("workers", workers);
    if (workers != previousWorkers && step == firstStep) { // the first step after a resize says what it was
      m.put("resized_from", previousWorkers);
    }
    m.put("bytes", bytes);
    return m;
  }

  /**
   * With --eval-every, the validation loss on the workers (which hold the base), added over them by
   * the driver. With --metric-for-best-model the running averages are scored beside the live
   * adapter in the same pass, by the code eval uses (val_loss_ema, val_loss_bema, and val_METRIC
   * for each when the metric is not the loss), and a candidate that becomes the best is kept in best/.
   */
  private void validate(GradientServer server, int step, ObjectNode m) throws IOException {
    if (cfg.eval().every() > 0 && (step + 1) % cfg.eval().every() == 0) {
      TrainConfig.Selection sel = cfg.eval().best();
      Map<String, float[]> candidates = new java.util.LinkedHashMap<>();
      candidates.put("adapter", params);
      if (sel.on()) {
        state.averages.ema().ifPresent(e -> candidates.put(Trainer.EMA, e));
        state.averages.bema(params).ifPresent(b -> candidates.put(Trainer.BEMA, b));
      }
      List<io.lorafleet.driver.eval.Scores> scores = scores(server.evaluate(step + 1, List.copyOf(candidates.values())), candidates.size());
      double vl = scores.get(0).tokens() == 0 ? 0 : scores.get(0).loss();
      valLosses.add(new double[] {step + 1, vl});
      m.put("val_loss", vl);
      if (!sel.on()) {
        return;
      }
      Map<String, Double> values = new java.util.LinkedHashMap<>();
      int i = 0;
      for (String name : candidates.keySet()) {
        io.lorafleet.driver.eval.Scores s = scores.get(i++);
        String suffix = name.equals("adapter") ? "" : "_" + name;
        values.put(name, sel.value(s));
        m.put("val_loss" + suffix, s.loss());
        if (!sel.metric().equals("loss")) {
          m.put("val_" + sel.metric() + suffix, sel.value(s));
        }
      }
      java.util.Optional<String> better = state.best.offer(step + 1, values);
      if (better.isPresent()) {
        keepBest(better.get(), candidates.get(better.get()), step + 1);
      }
      m.put("best_metric", state.best.metric());
      m.put("best_candidate", state.best.candidate());
    }
  }

  /** The workers' answers to an evaluation of {@code k} candidates, each candidate's scores added over the validation slots in slot order. */
  private static List<io.lorafleet.driver.eval.Scores> scores(List<byte[]> answers, int k) throws IOException {
    try {
      List<byte[]> slots = new java.util.ArrayList<>();
      for (byte[] a : answers) { // the peers in slot order, each with its slots in order
        slots.addAll(io.lorafleet.driver.executor.ValidationScorer.unframe(a));
      }
      return io.lorafleet.driver.eval.EvalScorer.decodeAndAdd(slots, k);
    } catch (IllegalArgumentException e) {
      throw new IOException("the workers' validation scores: " + e.getMessage(), e);
    }
  }

  /** Writes the new best candidate to best/ whole (a temporary renamed over the old one) and publishes it. */
  private void keepBest(String candidate, float[] values, int step) throws IOException {
    java.nio.file.Path out = ro.local();
    java.nio.file.Path tmp = out.resolve(".tmp-" + BestModel.DIR);
    Checkpoints.deleteTree(tmp);
    var v = ranks.map(r -> r.finalAdapter(values)).orElse(new io.lorafleet.worker.lora.LoraModel.Values(lora, values));
    io.lorafleet.worker.lora.AdapterFormat.write(tmp, v.model(), v.values(), Map.of("lorafleet.step", Integer.toString(step),
        "lorafleet.best_candidate", candidate, "lorafleet.best_metric", Double.toString(state.best.metric()),
        "lorafleet.metric_for_best_model", cfg.eval().best().metric()));
    Checkpoints.deleteTree(out.resolve(BestModel.DIR));
    java.nio.file.Files.move(tmp, out.resolve(BestModel.DIR), java.nio.file.StandardCopyOption.ATOMIC_MOVE);
    ro.publish(BestModel.DIR);
  }

  /** Appends the step to metrics.jsonl and the gauges; a fault plan may act after it. */
  private void record(int step, ObjectNode m) throws IOException {
    try {
      metrics.write(m);
    } catch (IOException e) {
      throw new OutputFailure("could not append step " + (step + 1) + " to " + ro.uri() + "/metrics.jsonl: " + e, e);
    }
    io.lorafleet.driver.metrics.TrainingGauges.step(m);
    faults.afterDriverStep(step, attempt, ro);
  }

  /** Whether the model is a sequence classifier, whose loss counts rows (examples), not target tokens. */
  private boolean classifier() {
    return lora.structure().config().arch().encoder();
  }

  /** The progress line: redrawn in place on a terminal; whole lines, now and then, in a log (a cluster's, a file). */
  private void report(int done, int doneHere, double loss, GradientServer.Gathered g, double elapsedS, double stepS) {
    if (!progress) {
      return;
    }
    int steps = cfg.batching().steps();
    double eta = elapsedS / doneHere * (steps - done);
    // input tokens a second, padding excluded; a classifier's examples beside them
    String rate = String.format("%.0f tok/s", g.inputTokens() / stepS) + (classifier() ? String.format("  %.0f ex/s", g.tokens() / stepS) : "");
    String line = String.format("step %d/%d  loss %.4f  %s  eta %.0fs", done, steps, loss, rate, eta)
        + (workers < cfg.batching().workers() ? String.format("  workers %d/%d", workers, cfg.batching().workers()) : "");
    if (TERMINAL) {
      System.out.print("\r" + line + "   ");
      System.out.flush();
    } else if (done % logEvery(steps) == 0 || done == steps) {
      io.lorafleet.driver.report.Progress.say(line);
    }
  }

  /** Hands checkpoint-{@code done} to the checkpoint writer: a copy of the adapter, the optimizer and the run's state. */
  private void snapshot(int done) throws IOException {
    Checkpoints.Snapshot snap = new Checkpoints.Snapshot(done, params.clone(), opt.firstMoment().clone(), opt.secondMoment().clone(),
        opt.stepCount(), cfg.batching().seed(), (long) done * cfg.batching().globalBatch(), scaler.scale(), scaler.cleanSteps(),
        state.checkpointTensors(),
        hfState(done), Map.of(ResolvedConfig.FILE, resolvedConfig));
    String name = Checkpoints.dirName(done);
    byte[] metricsSoFar = ro.isStaged() ? metrics.through(done) : new byte[0];
    ckpt.submit(ro.uri() + "/" + name, () -> {
      Checkpoints.write(ro.local(), lora, snap, job, cfg.run().keepCheckpoints(), () -> faults.inCheckpoint(done, ro.local()));
      ro.publishCheckpoint(name, () -> faults.inPublish(done));
      if (ro.isStaged()) {
        ro.replace(Trainer.METRICS, metricsSoFar); // a resume from this checkpoint finds the lines of the steps before it
      }
      io.lorafleet.driver.metrics.TrainingGauges.checkpointed();
      ro.pruneCheckpoints();
    });
  }
}
