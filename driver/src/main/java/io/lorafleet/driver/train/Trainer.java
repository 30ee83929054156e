package io.lorafleet.driver.train;

import ai.djl.Device;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.driver.allreduce.GradientServer;
import io.lorafleet.driver.checkpoint.Checkpoints;
import io.lorafleet.driver.checkpoint.RunOutput;
import io.lorafleet.driver.optim.AdamW;
import io.lorafleet.driver.optim.Schedule;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.CausalLM;
import io.lorafleet.worker.tokenizer.Tokenizer;
import io.lorafleet.worker.train.TrainStep;
import java.io.BufferedWriter;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.FutureTask;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.rdd.RDD;
import org.apache.spark.sql.SparkSession;
import scala.reflect.ClassTag$;

/**
 * {@code lorafleet train}: the driver's loop. It owns the fp32 master adapter and the optimizer,
 * launches one barrier stage of N worker tasks, and every step broadcasts the adapter, gathers the
 * gradient sums, reduces them to the token-weighted mean over the global batch, clips, and updates.
 * A failed barrier stage is not retried by Spark, so the driver relaunches it from the last
 * checkpoint, up to maxAttempts times.
 */
public final class Trainer {
  private static final ObjectMapper JSON = new ObjectMapper();

  private Trainer() {}

  /** What a run produced. */
  public record Result(float[] adapter, List<Double> losses, int attempts, Path finalAdapter) {}

  public static Result run(SparkSession spark, TrainConfig cfg, boolean progress) throws IOException {
    RunOutput ro = RunOutput.of(cfg.output(), spark.sparkContext().hadoopConfiguration());
    Path out = ro.local();
    CausalLM base = ModelCache.model(cfg.model(), Device.cpu());
    LoraModel lora = LoraModel.create(base, cfg.lora()); // fails fast on bad targets
    checkDataset(cfg);
    checkSlots(spark, cfg);
    float[] params = initialParams(cfg, lora, base);
    AdamW opt = new AdamW(params.length, 0.9, 0.999, 1e-8, cfg.weightDecay(), cfg.optimizer().equals("sgd"));
    int start = 0;
    if (cfg.resume()) {
      ro.pullCheckpoints();
      var st = Checkpoints.latestValid(out, base);
      if (st.isPresent()) {
        params = st.get().params();
        opt.restore(st.get().m(), st.get().v(), st.get().optimizerSteps());
        start = st.get().step();
        say(progress, "resuming from " + st.get().dir());
      }
    }
    Schedule sched = new Schedule(cfg.schedule(), cfg.lr(), cfg.warmup(), cfg.steps());
    List<Double> losses = new ArrayList<>();
    List<double[]> valLosses = new ArrayList<>();
    List<io.lorafleet.datasets.arrow.Example> val = validation(cfg);
    ExecutorService ckpt = Executors.newSingleThreadExecutor(r -> new Thread(r, "lorafleet-checkpoint"));
    int attempts = 0;
    try (BufferedWriter metrics = Files.newBufferedWriter(out.resolve("metrics.jsonl"), StandardOpenOption.CREATE, StandardOpenOption.APPEND)) {
      while (start < cfg.steps()) {
        attempts++;
        try {
          start = stage(spark, cfg, ro, lora, params, opt, sched, start, losses, valLosses, val, metrics, ckpt, progress);
        } catch (IOException | RuntimeException e) {
          if (attempts >= cfg.maxAttempts()) {
            throw new IOException("training failed after " + attempts + " attempts; last error: " + e.getMessage(), e);
          }
          say(progress, "training stage failed (" + e.getMessage() + "); relaunching from the last checkpoint");
          checkSlots(spark, cfg);
          waitFor(ckpt);
          var st = Checkpoints.latestValid(out, base);
          if (st.isPresent()) {
            System.arraycopy(st.get().params(), 0, params, 0, params.length);
            opt.restore(st.get().m(), st.get().v(), st.get().optimizerSteps());
            start = st.get().step();
          } else {
            System.arraycopy(initialParams(cfg, lora, base), 0, params, 0, params.length);
            opt.restore(new float[params.length], new float[params.length], 0);
            start = 0;
          }
          while (losses.size() > start) {
            losses.remove(losses.size() - 1);
          }
          final int resumed = start;
          valLosses.removeIf(v -> v[0] > resumed);
        }
      }
      waitFor(ckpt);
    } finally {
      ckpt.shutdown();
    }
    Path fin = out.resolve("adapter");
    AdapterFormat.write(fin, lora, params, Map.of("lorafleet.step", Integer.toString(cfg.steps())));
    if (cfg.averageLast() > 0) {
      averageLast(cfg, base, out);
    }
    plot(out, losses, valLosses);
    ObjectNode summary = JSON.createObjectNode();
    summary.put("steps", cfg.steps());
    summary.put("workers", cfg.workers());
    summary.put("attempts", attempts);
    summary.put("final_loss", losses.isEmpty() ? Double.NaN : losses.get(losses.size() - 1));
    summary.put("trainable_parameters", params.length);
    summary.put("base_parameters", base.parameterCount());
    Files.writeString(out.resolve("run_summary.json"), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(summary));
    for (String f : List.of("adapter", "averaged", "loss.svg", "metrics.jsonl", "run_summary.json")) {
      ro.publish(f);
    }
    return new Result(params, losses, attempts, fin);
  }

  /** The adapter at step 0: PEFT's init, or --init-adapter for continued training. */
  private static float[] initialParams(TrainConfig cfg, LoraModel lora, CausalLM base) {
    return cfg.initAdapter().isEmpty() ? lora.initialParams(cfg.seed()) : AdapterFormat.read(Path.of(cfg.initAdapter()), base).values();
  }

  /**
   * A barrier stage needs every slot at once. Local masters have a fixed slot count; on a cluster,
   * executors register after the application starts (and come back after one is lost), so wait for
   * enough of them, each assumed to hold spark.executor.cores / spark.task.cpus slots (1 if unset).
   */
  static void checkSlots(SparkSession spark, TrainConfig cfg) {
    var sc = spark.sparkContext();
    if (sc.isLocal()) {
      int slots = sc.defaultParallelism();
      if (cfg.workers() > slots) {
        throw new IllegalArgumentException("--workers " + cfg.workers() + " exceeds the " + slots + " task slots of this Spark application");
      }
      return;
    }
    int perExecutor = Math.max(1, sc.getConf().getInt("spark.executor.cores", 1) / sc.getConf().getInt("spark.task.cpus", 1));
    int needed = (cfg.workers() + perExecutor - 1) / perExecutor;
    long deadline = System.currentTimeMillis() + cfg.timeoutMs();
    while (true) {
      int executors = sc.statusTracker().getExecutorInfos().length - 1; // the driver is listed too
      if (executors >= needed) {
        return;
      }
      if (System.currentTimeMillis() > deadline) {
        throw new IllegalArgumentException("--workers " + cfg.workers() + " needs " + needed + " executors but only " + executors
            + " registered within " + cfg.timeoutMs() + " ms");
      }
      try {
        Thread.sleep(200);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IllegalStateException(e);
      }
    }
  }

  /** The validation examples used by --eval-every (at most --eval-examples), or none. */
  static List<io.lorafleet.datasets.arrow.Example> validation(TrainConfig cfg) {
    Path dir = Path.of(cfg.data(), "validation");
    if (cfg.evalEvery() == 0) {
      return List.of();
    }
    List<io.lorafleet.datasets.arrow.Example> all = Files.isDirectory(dir) ? ModelCache.examples(dir.toString()) : List.of();
    if (all.isEmpty()) {
      throw new IllegalArgumentException("--eval-every " + cfg.evalEvery() + " needs validation examples but " + dir
          + " holds none; prepare with --val-fraction, or set --eval-every 0");
    }
    return all.subList(0, Math.min(all.size(), cfg.evalExamples()));
  }

  /** --average-last K: the last K checkpoints combined into averaged/ (svd keeps the run's rank). */
  static void averageLast(TrainConfig cfg, CausalLM base, Path out) throws IOException {
    List<Path> all = Checkpoints.list(out);
    List<Path> last = all.subList(Math.max(0, all.size() - cfg.averageLast()), all.size());
    List<io.lorafleet.driver.average.AdapterAverager.Source> src = new ArrayList<>();
    for (Path p : last) {
      src.add(new io.lorafleet.driver.average.AdapterAverager.Source(p.getFileName().toString(), AdapterFormat.read(p, base)));
    }
    double[] w = new double[src.size()];
    java.util.Arrays.fill(w, 1);
    var r = io.lorafleet.driver.average.AdapterAverager.combine(base, src, w, true, cfg.averageMode(), cfg.rank());
    AdapterFormat.write(out.resolve("averaged"), r.model(), r.values(), r.metadata());
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

  static void checkDataset(TrainConfig cfg) throws IOException {
    Path manifest = Path.of(cfg.data(), "manifest.json");
    if (!Files.isRegularFile(manifest)) {
      throw new IllegalArgumentException("--data " + cfg.data() + ": manifest.json is missing; run lorafleet prepare first");
    }
    String fp = JSON.readTree(manifest.toFile()).path("tokenizer_fingerprint").asText();
    try (Tokenizer tok = Tokenizer.load(Path.of(cfg.model()))) {
      if (!fp.equals(tok.fingerprint())) {
        throw new IllegalArgumentException("--data " + cfg.data() + " was tokenized with tokenizer " + fp + " but --model " + cfg.model()
            + " has tokenizer " + tok.fingerprint() + "; prepare the data again with this model");
      }
    }
  }

  private static void waitFor(ExecutorService ex) {
    try {
      ex.submit(() -> { }).get();
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
  }

  /** Runs steps [start, steps) in one barrier stage; returns the step reached. */
  private static int stage(SparkSession spark, TrainConfig cfg, RunOutput ro, LoraModel lora, float[] params, AdamW opt, Schedule sched, int start,
      List<Double> losses, List<double[]> valLosses, List<io.lorafleet.datasets.arrow.Example> val, BufferedWriter metrics, ExecutorService ckpt,
      boolean progress) throws IOException {
    byte[] secret = new byte[32];
    new SecureRandom().nextBytes(secret);
    String jobId = UUID.randomUUID().toString();
    String host = spark.sparkContext().getConf().get("spark.driver.host", "127.0.0.1");
    try (GradientServer server = new GradientServer("0.0.0.0", jobId, secret, cfg.workers(), cfg.timeoutMs())) {
      JavaSparkContext jsc = JavaSparkContext.fromSparkContext(spark.sparkContext());
      RDD<String> ranks = jsc.parallelize(java.util.stream.IntStream.range(0, cfg.workers()).boxed().toList(), cfg.workers())
          .rdd().barrier().mapPartitions(new WorkerTask(cfg, host, server.port(), jobId, secret), false, ClassTag$.MODULE$.apply(String.class));
      ranks.setName("lorafleet barrier stage: gradient workers");
      // A thread of its own inherits the job group (Spark local properties are inheritable), so a
      // failed step can cancel exactly this stage and wait for its slots to free up.
      String group = "lorafleet-train-" + jobId;
      jsc.setJobGroup(group, "lorafleet train: " + cfg.workers() + " LoRA workers, steps " + start + ".." + cfg.steps(), true);
      FutureTask<Object> job = new FutureTask<>(ranks::collect);
      Thread runner = new Thread(job, "lorafleet-barrier-stage");
      runner.setDaemon(true);
      runner.start();
      jsc.clearJobGroup();
      try {
        return steps(cfg, ro, lora, params, opt, sched, start, losses, valLosses, val, metrics, ckpt, progress, server, job);
      } catch (IOException | RuntimeException e) {
        jsc.cancelJobGroup(group);
        try {
          job.get(cfg.timeoutMs(), TimeUnit.MILLISECONDS);
        } catch (Exception ignored) {
          // the stage failed or was cancelled: that is what we waited for
        }
        throw e;
      }
    }
  }

  /** ": <why the stage failed>" when the stage's job has failed (the task's own exception line), else "". */
  static String stageFailure(FutureTask<Object> job) {
    if (!job.isDone()) {
      return "";
    }
    try {
      job.get();
      return "";
    } catch (java.util.concurrent.ExecutionException e) {
      String m = String.valueOf(e.getCause().getMessage());
      for (String line : m.split("\n")) {
        int at = line.indexOf("Exception: ");
        if (at >= 0 && !line.contains("SparkException")) {
          return ": " + line.substring(at + "Exception: ".length()).trim();
        }
      }
      return ": " + m.split("\n")[0];
    } catch (Exception e) {
      return "";
    }
  }

  /** The step loop of one stage; returns the step reached. */
  private static int steps(TrainConfig cfg, RunOutput ro, LoraModel lora, float[] params, AdamW opt, Schedule sched, int start, List<Double> losses,
      List<double[]> valLosses, List<io.lorafleet.datasets.arrow.Example> val, BufferedWriter metrics, ExecutorService ckpt, boolean progress,
      GradientServer server, FutureTask<Object> job) throws IOException {
    try {
      server.awaitWorkers(job::isDone);
    } catch (IOException e) {
      throw new IOException(e.getMessage() + stageFailure(job), e);
    }
    long t0 = System.nanoTime();
    int step = start;
    for (; step < cfg.steps(); step++) {
      if (job.isDone()) {
        throw new IOException("the barrier stage ended before step " + step + stageFailure(job));
      }
      long ts = System.nanoTime();
      long sentBefore = server.bytesSent() + server.bytesReceived();
      GradientServer.Push[] pushes = server.exchange(step, params);
      long tc = System.nanoTime();
      double[] acc = new double[params.length];
      long tokens = 0;
      double lossSum = 0;
      for (GradientServer.Push p : pushes) { // rank order: the sum is the same on every run
        float[] g = p.gradSum();
        for (int i = 0; i < g.length; i++) {
          acc[i] += g[i];
        }
        tokens += p.tokens();
        lossSum += p.lossSum();
      }
      float[] grad = new float[params.length];
      for (int i = 0; i < grad.length; i++) {
        grad[i] = tokens == 0 ? 0f : (float) (acc[i] / tokens);
      }
      double norm = AdamW.clipByGlobalNorm(grad, cfg.clip());
      double lr = sched.lr(step);
      opt.step(params, grad, lr);
      long to = System.nanoTime();
      double loss = tokens == 0 ? 0 : lossSum / tokens;
      losses.add(loss);
      ObjectNode m = JSON.createObjectNode();
      m.put("step", step + 1);
      m.put("loss", loss);
      m.put("lr", lr);
      m.put("grad_norm", norm);
      m.put("tokens", tokens);
      m.put("step_ms", (to - ts) / 1e6);
      m.put("exchange_ms", (tc - ts) / 1e6);
      // the slowest worker's forward+backward; the rest of the exchange is the channel's cost
      long compute = java.util.Arrays.stream(pushes).mapToLong(GradientServer.Push::computeNanos).max().orElse(0);
      m.put("compute_ms", compute / 1e6);
      m.put("communication_ms", Math.max(0, (tc - ts) - compute) / 1e6);
      m.put("optimizer_ms", (to - tc) / 1e6);
      m.put("bytes", server.bytesSent() + server.bytesReceived() - sentBefore);
      if (!val.isEmpty() && (step + 1) % cfg.evalEvery() == 0) {
        double vl = TrainStep.evaluate(lora, params, GlobalBatch.microBatches(val, cfg.microBatch())).meanLoss();
        valLosses.add(new double[] {step + 1, vl});
        m.put("val_loss", vl);
      }
      metrics.write(JSON.writeValueAsString(m));
      metrics.newLine();
      metrics.flush();
      int done = step + 1;
      if (progress) {
        double el = (System.nanoTime() - t0) / 1e9;
        double eta = el / (done - start) * (cfg.steps() - done);
        System.out.printf("\rstep %d/%d  loss %.4f  %.0f tok/s  eta %.0fs   ", done, cfg.steps(), loss, tokens / ((to - ts) / 1e9), eta);
        System.out.flush();
      }
      if (done % cfg.checkpointEvery() == 0 || done == cfg.steps()) {
        float[] p = params.clone();
        float[] m1 = opt.firstMoment().clone();
        float[] m2 = opt.secondMoment().clone();
        long os = opt.stepCount();
        ckpt.submit(() -> {
          Checkpoints.write(ro.local(), done, lora, p, m1, m2, os, cfg.seed(), (long) done * cfg.globalBatch(), cfg.keepCheckpoints());
          ro.publish("checkpoint-" + done);
          ro.pruneCheckpoints();
          return null;
        });
      }
    }
    server.finish();
    if (progress) {
      System.out.println();
    }
    try {
      job.get();
    } catch (Exception e) {
      throw new IOException("barrier stage failed: " + e.getMessage(), e);
    }
    return step;
  }

  private static void say(boolean progress, String s) {
    if (progress) {
      System.out.println(s);
    }
  }
}
