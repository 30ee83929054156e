package io.lorafleet.driver.train;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.driver.allreduce.GradientServer;
import io.lorafleet.driver.allreduce.PortRange;
import io.lorafleet.driver.allreduce.Transport;
import io.lorafleet.driver.checkpoint.CheckpointWriter;
import io.lorafleet.driver.checkpoint.RunOutput;
import io.lorafleet.driver.executor.FaultPlan;
import io.lorafleet.driver.executor.WorkerJob;
import io.lorafleet.driver.executor.WorkerTask;
import io.lorafleet.driver.optim.Schedule;
import io.lorafleet.worker.flat.FlatLayout;
import io.lorafleet.worker.lora.LoraModel;
import java.io.IOException;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.FutureTask;
import java.util.concurrent.TimeUnit;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.rdd.RDD;
import org.apache.spark.sql.SparkSession;
import scala.reflect.ClassTag$;

/**
 * One barrier stage of a job: N worker tasks, which load the frozen base once, and the driver's
 * loop over the gradient channel. Each tick every active run takes its next step in turn
 * ({@link RunSteps}): a plain train is a job of one run; a multi-run job trains several adapters on
 * the same base and workers, each on its own data, and a run whose steps are done leaves while the
 * others go on. Any failure of the channel ends the stage; {@link Trainer} decides whether to relaunch.
 */
final class Stage {
  private final SparkSession spark;
  private final List<JobRun> runs;
  private final FaultPlan faults;
  private final int attempt;
  private final Workers workers;
  private final Pruning pruning;

  /**
   * What stays fixed for a run, whichever stage runs it.
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

  /** What a run's stages write in turn: the step losses, the validation losses, metrics.jsonl and the checkpoints. */
  record Log(List<Double> losses, List<double[]> valLosses, MetricsLog metrics, CheckpointWriter ckpt) {}

  /** A stage of the job's active {@code runs} on {@code workers}, the {@code attempt}-th barrier stage of the job (fault plans name it). */
  Stage(SparkSession spark, List<JobRun> runs, FaultPlan faults, int attempt, Workers workers, Pruning pruning) {
    this.spark = spark;
    this.runs = List.copyOf(runs);
    this.faults = faults;
    this.attempt = attempt;
    this.workers = workers;
    this.pruning = pruning;
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
    TrainConfig cfg = runs.get(0).cfg(); // what every run shares: the base, the workers, the channel
    List<WorkerJob.Run> work = new ArrayList<>();
    for (JobRun r : runs) {
      TrainConfig c = r.cfg();
      var b = c.batching();
      work.add(new WorkerJob.Run(r.run.lora().config(), new WorkerJob.Data(c.io().data(), r.run.job().get("dataset_fingerprint").asText(),
          workers.count(), b.steps(), b.globalBatch(), b.microBatch(), b.shuffleWindow(), b.seed(), c.eval().examples(), c.eval().best().generates(),
          new io.lorafleet.driver.eval.EvalScorer())));
    }
    return new WorkerJob(
        new WorkerJob.Base(cfg.io().model(), cfg.compute().quantize(), cfg.compute().gradientCheckpointing(), cfg.io().labels(),
            cfg.compute().modelDropout(), intraOpThreads(cfg), cfg.compute().mixedRuns()),
        work,
        new WorkerJob.Channel(host, port, jobId, secret, cfg.channel().transport(), cfg.channel().preReduce().equals("executor"),
            cfg.run().timeoutMs()),
        faults, attempt);
  }

  /** --intra-op-threads, or spark.task.cpus (the cores each task is given) when it is 0. */
  private int intraOpThreads(TrainConfig cfg) {
    int t = cfg.compute().intraOpThreads();
    return t > 0 ? t : spark.sparkContext().getConf().getInt("spark.task.cpus", 1);
  }

  /** Runs the active runs' steps until each is done, or until the stage ends at a checkpoint to grow; the runs say where they stand. */
  void run() throws IOException {
    TrainConfig cfg = runs.get(0).cfg();
    byte[] secret = new byte[32];
    new SecureRandom().nextBytes(secret);
    String jobId = UUID.randomUUID().toString();
    String[] addr = addresses(spark.sparkContext().getConf());
    List<FlatLayout> layouts = runs.stream().map(r -> r.run.lora().layout()).toList();
    int slots = io.lorafleet.driver.executor.GlobalBatch.slots(cfg.batching().globalBatch(), cfg.batching().microBatch());
    try (GradientServer server = new GradientServer(addr[0], PortRange.parse(cfg.channel().ports()), jobId, secret, slots, cfg.run().timeoutMs(),
        (run, i) -> tensorAt(layouts.get(run), i), Transport.parse(cfg.channel().transport()))) {
      JavaSparkContext jsc = JavaSparkContext.fromSparkContext(spark.sparkContext());
      int n = workers.count();
      RDD<String> ranks = jsc.parallelize(java.util.stream.IntStream.range(0, n).boxed().toList(), n)
          .rdd().barrier().mapPartitions(new WorkerTask(workerJob(addr[1], server.port(), jobId, secret), spark.sparkContext().hadoopConfiguration()),
              false, ClassTag$.MODULE$.apply(String.class));
      ranks.setName("lorafleet barrier stage: gradient workers");
      // A thread of its own inherits the job group (Spark local properties are inheritable), so a
      // failed step can cancel exactly this stage and wait for its slots to free up.
      String group = "lorafleet-train-" + jobId;
      jsc.setJobGroup(group, "lorafleet train: " + n + " LoRA workers, " + (runs.size() == 1 ? "steps " + runs.get(0).next + ".." + cfg.batching().steps()
          : runs.size() + " runs"), true);
      FutureTask<Object> stage = new FutureTask<>(ranks::collect);
      Thread runner = new Thread(stage, "lorafleet-barrier-stage");
      runner.setDaemon(true);
      runner.start();
      jsc.clearJobGroup();
      try {
        steps(server, stage, cfg.run().timeoutMs());
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

  /** The tick loop: every active run takes its next step in turn, then the rungs of successive halving and the chance to grow. */
  private void steps(GradientServer server, FutureTask<Object> stage, int timeoutMs) throws IOException {
    connect(server, stage);
    List<RunSteps> steppers = new ArrayList<>();
    for (JobRun r : runs) {
      RunSteps s = new RunSteps(r, attempt, workers, runs.size() > 1);
      s.connect(server);
      steppers.add(s);
    }
    boolean alone = runs.size() > 1; // one run's divergence never fails a stage that other runs share
    while (runs.stream().anyMatch(JobRun::active)) {
      if (stage.isDone()) {
        throw new IOException("the barrier stage ended before " + runs.stream().filter(JobRun::active).map(r -> r.prefix() + "step " + r.next)
            .findFirst().orElse("") + failure(stage));
      }
      // a tick: every active run's next step, their adapters out together and their sums back in order
      List<Integer> active = new ArrayList<>();
      List<GradientServer.Turn> turns = new ArrayList<>();
      for (int i = 0; i < runs.size(); i++) {
        if (runs.get(i).active()) {
          active.add(i);
          turns.add(steppers.get(i).turn());
        }
      }
      long ts = System.nanoTime();
      long bytesBefore = server.bytesSent() + server.bytesReceived();
      List<GradientServer.Outcome> outcomes = exchange(server, stage, turns, timeoutMs);
      long tc = System.nanoTime();
      long bytes = server.bytesSent() + server.bytesReceived() - bytesBefore;
      boolean allCheckpointed = true;
      for (int k = 0; k < active.size(); k++) {
        allCheckpointed &= steppers.get(active.get(k)).step(server, turns.get(k), outcomes.get(k), alone, ts, tc, bytes);
      }
      pruning.afterTick(runs, steppers);
      if (allCheckpointed && runs.stream().anyMatch(JobRun::active) && workers.count() < runs.get(0).cfg().batching().workers()
          && workers.available().getAsInt() > workers.count()) {
        // grown back: this stage ends here, between stages, and the next one runs from these steps on the workers there are now
        io.lorafleet.driver.report.Progress.say("executors returned: ending the " + workers.count() + "-worker stage at a checkpoint"
            + " to grow (the update does not depend on the worker count)");
        break;
      }
    }
    server.finish();
    steppers.forEach(RunSteps::endProgress);
    try {
      stage.get();
    } catch (Exception e) {
      throw new IOException("barrier stage failed: " + e.getMessage(), e);
    }
  }

  /** Waits for every worker's connection. */
  private void connect(GradientServer server, FutureTask<Object> stage) throws IOException {
    try {
      server.awaitWorkers(stage::isDone);
    } catch (IOException e) {
      throw new IOException(e.getMessage() + failure(stage), e);
    }
  }

  /** One tick's exchange; a worker that dropped its connection is failing its task, so Spark is asked why. */
  private static List<GradientServer.Outcome> exchange(GradientServer server, FutureTask<Object> stage, List<GradientServer.Turn> turns,
      int timeoutMs) throws IOException {
    try {
      return server.exchange(turns);
    } catch (IOException e) { // a non-finite push is no IOException: the run decides what it means
      try {
        stage.get(timeoutMs, TimeUnit.MILLISECONDS);
      } catch (Exception ignored) {
        // failure() reads it below
      }
      throw new IOException(e.getMessage() + failure(stage), e);
    }
  }
}
