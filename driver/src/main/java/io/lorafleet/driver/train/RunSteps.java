package io.lorafleet.driver.train;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.driver.allreduce.GradientServer;
import io.lorafleet.driver.checkpoint.CheckpointWriter;
import io.lorafleet.driver.checkpoint.Checkpoints;
import io.lorafleet.driver.checkpoint.OutputFailure;
import io.lorafleet.driver.checkpoint.RunOutput;
import io.lorafleet.driver.executor.FaultPlan;
import io.lorafleet.driver.kernels.Kernels;
import io.lorafleet.driver.optim.AdamW;
import io.lorafleet.driver.optim.LossScaler;
import io.lorafleet.driver.optim.RankAllocator;
import io.lorafleet.driver.optim.Schedule;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.train.NonFiniteGradientException;
import java.io.IOException;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * One run's steps within a barrier stage. Each step reads top to bottom as exchange, update,
 * record, validate, report, snapshot: the driver broadcasts the run's adapter, gathers its gradient
 * sums, reduces them to the token-weighted mean over the run's global batch, clips, updates, logs
 * the step and, every checkpoint-every steps, hands a snapshot to the checkpoint writer. The
 * {@link Stage} calls every active run's step in turn over the one gradient channel.
 */
final class RunSteps {
  private static final ObjectMapper JSON = new ObjectMapper();
  /** Whether the progress line goes to a terminal; otherwise (a cluster's log, a pipe) it is printed as whole lines. */
  private static final boolean TERMINAL = System.console() != null;

  private final JobRun member;
  /** The run's index in the job: the wire names its adapter so. */
  private final int index;
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
  /** Whether other runs share the stage (their progress lines are whole lines, one a run). */
  private final boolean shared;
  private final FaultPlan faults;
  private final int attempt;
  private final Stage.Workers workers;
  private final ObjectNode job;
  private final LossScaler scaler;
  /** AdaLoRA's allocation, which runs on the driver after each optimizer step. */
  private final Optional<RankAllocator> ranks;
  private final TrainingState state;
  private final String resolvedConfig;
  /** The stage's first step of this run (metrics name a resize there). */
  private final int firstStep;
  private long t0;

  RunSteps(JobRun member, int attempt, Stage.Workers workers, boolean shared) {
    Stage.Run run = member.run;
    this.member = member;
    this.index = member.index;
    this.cfg = run.cfg();
    this.ro = run.ro();
    this.lora = run.lora();
    this.sched = run.sched();
    this.job = run.job();
    this.resolvedConfig = run.resolvedConfig();
    this.faults = run.faults();
    this.progress = run.progress();
    this.shared = shared;
    this.losses = member.log.losses();
    this.valLosses = member.log.valLosses();
    this.metrics = member.log.metrics();
    this.ckpt = member.log.ckpt();
    this.state = member.state;
    this.params = state.params;
    this.opt = state.opt;
    this.scaler = state.scaler;
    this.ranks = state.ranks;
    this.attempt = attempt;
    this.workers = workers;
    this.firstStep = member.next;
  }

  /** After every worker connected: DoRA's magnitudes from the base (which only the workers hold), and the running averages' start. */
  void connect(GradientServer server) throws IOException {
    if (lora.needsBaseValues(params)) {
      lora.takeBaseValues(params, server.initialize(index, params));
    }
    state.averages.startAt(member.next, params); // after the magnitudes: DoRA's are the base's by now
    t0 = System.nanoTime();
  }

  /** The run's turn in the next tick: its adapter for its next step, under the loss scale its gradients are computed with. */
  GradientServer.Turn turn() throws IOException {
    ckpt.check();
    return new GradientServer.Turn(index, member.next, params, scaler.scale());
  }

  /**
   * The rest of the run's step once the tick's exchange gave its {@code outcome}: update, record,
   * validate, report, snapshot. Returns whether it wrote a checkpoint; the run's status says whether
   * it goes on. In a job of several runs, a non-finite gradient or update ends this run alone
   * ({@code alone}); in a plain train it fails the stage, and {@link Trainer} relaunches it once
   * from the last checkpoint before it calls the run diverged. {@code ts} and {@code tc} are when
   * the tick started and when its exchange ended, {@code bytes} what the channel moved for it.
   */
  boolean step(GradientServer server, GradientServer.Turn turn, GradientServer.Outcome outcome, boolean alone, long ts, long tc, long bytes)
      throws IOException {
    int step = turn.step();
    double scale = turn.lossScale(); // the scale this step's gradients were computed under
    double lr = sched.lr(step);
    GradientServer.Gathered g;
    double norm;
    try {
      g = outcome.get();
      norm = update(g, step, scale, lr);
    } catch (NonFiniteGradientException e) {
      if (!alone) {
        throw e;
      }
      member.end(JobRun.Status.DIVERGED, step, e.getMessage());
      io.lorafleet.driver.report.Progress.say(member.prefix() + "diverged at step " + (step + 1) + " (" + e.getMessage() + "); it stops here, "
          + "its last checkpoint kept, and the other runs go on");
      return false;
    }
    state.averages.afterStep(step + 1, params);
    long to = System.nanoTime();
    ObjectNode m = metricsLine(step, g, scale, lr, norm, new long[] {ts, tc, to}, bytes);
    validate(server, step, m);
    record(step, m);
    int done = step + 1;
    member.next = done;
    report(done, done - firstStep, m.get("loss").asDouble(), g, (System.nanoTime() - t0) / 1e9, (to - ts) / 1e9);
    boolean stop = state.best.stop();
    boolean snapshot = done % cfg.run().checkpointEvery() == 0 || done == cfg.batching().steps() || stop;
    if (snapshot) {
      snapshot(done);
    }
    if (stop) { // EarlyStoppingCallback: the run ends here, its last step checkpointed
      String why = cfg.eval().best().patience() + " evaluations without improving " + cfg.eval().best().metric() + " by more than "
          + cfg.eval().best().threshold() + " (best " + state.best.metric() + ", " + state.best.candidate() + " at step " + state.best.step() + ")";
      member.end(JobRun.Status.STOPPED_EARLY, done, why);
      io.lorafleet.driver.report.Progress.say(member.prefix() + "early stopping at step " + done + ": " + why);
    } else if (done == cfg.batching().steps()) {
      member.end(JobRun.Status.FINISHED, done, "");
    }
    return snapshot;
  }

  /** The validation loss of the run's last evaluation, if it had one. */
  Optional<Double> lastValidationLoss() {
    return valLosses.isEmpty() ? Optional.empty() : Optional.of(valLosses.get(valLosses.size() - 1)[1]);
  }

  /** Ends the run at its current step for successive halving, checkpointing that step if it has no checkpoint yet. */
  void prune(String why) throws IOException {
    int done = member.next;
    if (done % cfg.run().checkpointEvery() != 0) {
      snapshot(done);
    }
    member.end(JobRun.Status.PRUNED, done, why);
    io.lorafleet.driver.report.Progress.say(member.prefix() + "pruned at step " + done + ": " + why);
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
    m.put("workers", workers.count());
    if (workers.count() != workers.previous() && step == firstStep) { // the first step after a resize says what it was
      m.put("resized_from", workers.previous());
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
      List<io.lorafleet.driver.eval.Scores> scores = scores(server.evaluate(index, step + 1, List.copyOf(candidates.values())), candidates.size());
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

  /** trainer_state.json's fields beyond lorafleet's: transformers' global_step, max_steps and log_history, and AdaLoRA's allocation. */
  private ObjectNode hfState(int done) throws IOException {
    ObjectNode n = ranks.map(RankAllocator::checkpointState).orElse(JSON.createObjectNode());
    state.best.write(n, ro.uri().replaceAll("/+$", ""));
    n.put("global_step", done);
    n.put("max_steps", cfg.batching().steps());
    n.set("log_history", metrics.logHistory(done));
    return n;
  }

  /** Appends the step to metrics.jsonl and the gauges; a fault plan may act after it. */
  private void record(int step, ObjectNode m) throws IOException {
    try {
      metrics.write(m);
    } catch (IOException e) {
      throw new OutputFailure("could not append step " + (step + 1) + " to " + ro.uri() + "/metrics.jsonl: " + e, e);
    }
    io.lorafleet.driver.metrics.TrainingGauges.step(member.name, m);
    faults.afterDriverStep(step, attempt, ro);
  }

  /** Whether the model is a sequence classifier, whose loss counts rows (examples), not target tokens. */
  private boolean classifier() {
    return lora.structure().config().arch().encoder();
  }


  /**
   * The progress line: redrawn in place on a terminal; whole lines, now and then, in a log (a
   * cluster's, a file) and for each run of a multi-run job, one line a run.
   */
  private void report(int done, int doneHere, double loss, GradientServer.Gathered g, double elapsedS, double stepS) {
    if (!progress) {
      return;
    }
    int steps = cfg.batching().steps();
    double eta = elapsedS / doneHere * (steps - done);
    // input tokens a second, padding excluded; a classifier's examples beside them
    String rate = String.format("%.0f tok/s", g.inputTokens() / stepS) + (classifier() ? String.format("  %.0f ex/s", g.tokens() / stepS) : "");
    String line = member.prefix() + String.format("step %d/%d  loss %.4f  %s  eta %.0fs", done, steps, loss, rate, eta)
        + (workers.count() < cfg.batching().workers() ? String.format("  workers %d/%d", workers.count(), cfg.batching().workers()) : "");
    if (TERMINAL && !shared) {
      System.out.print("\r" + line + "   ");
      System.out.flush();
    } else if (done % Stage.logEvery(steps) == 0 || done == steps) {
      io.lorafleet.driver.report.Progress.say(line);
    }
  }

  /** Ends the stage's progress line where it was redrawn in place (a plain train on a terminal). */
  void endProgress() {
    if (progress && TERMINAL && !shared) {
      System.out.println();
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
      io.lorafleet.driver.metrics.TrainingGauges.checkpointed(member.name);
      ro.pruneCheckpoints();
    });
  }
}
