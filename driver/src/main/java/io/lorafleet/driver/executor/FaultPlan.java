package io.lorafleet.driver.executor;

import java.io.IOException;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import io.lorafleet.driver.checkpoint.RunOutput;
import org.apache.spark.SparkContext;

/**
 * Faults injected at points a test names, never after a timer: "fail rank 1 at step 7 in the first
 * attempt" happens at step 7 on every machine, however fast. Tests and the fault-injection suite
 * set it as the Spark conf {@value #CONF} (or the job thread's local property of the same name);
 * runs without it inject nothing.
 *
 * <p>Grammar: faults separated by ',', each {@code ACTION@STEP[:rank=R][:attempt=A|*][:run=K]}. STEP is the
 * 0-based step index (metrics.jsonl's step - 1); attempt defaults to 1 (the first barrier stage),
 * '*' means every attempt; rank defaults to 0; run, the index of a multi-run job's run, defaults to
 * every run (a worker's faults only name one). Actions:
 * <ul>
 *   <li>{@code fail}: the worker task throws before computing the step;
 *   <li>{@code nan}: the worker pushes a gradient holding NaN (a broken peer, or a diverged step);
 *   <li>{@code diverge}: the worker's backward pass runs with a NaN loss scale, so its own gradient
 *       check finds a non-finite gradient, as in a step that diverged on the worker;
 *   <li>{@code overflow}: the worker reports an fp16 overflow for the step, as an fp16 worker does;
 *   <li>{@code kill}: the worker sends SIGKILL to its own executor JVM (refused in local mode,
 *       where that JVM is the driver);
 *   <li>{@code kill-driver-in-checkpoint}: the driver SIGKILLs itself while writing checkpoint-STEP
 *       (after the adapter file, before the optimizer state and the rename);
 *   <li>{@code kill-driver-in-publish}: the driver SIGKILLs itself while uploading checkpoint-STEP to
 *       a Hadoop-URI output, after its first file and before its commit marker (a plain path has no
 *       upload, and there it does nothing);
 *   <li>{@code fill-disk-in-checkpoint}: while writing checkpoint-STEP, the driver fills the output's
 *       filesystem with a temporary file (a real full disk: use it on a small tmpfs);
 *   <li>{@code pause}: after step STEP is recorded (metrics.jsonl, the metrics gauges), the driver
 *       writes {@code _paused-STEP} into the run's output (a local path or a Hadoop URI) and waits
 *       until {@code _resume-STEP} appears there, so that a test can look at a live run, or act on its
 *       storage, at a known step.
 * </ul>
 */
public record FaultPlan(List<Fault> faults) implements Serializable {
  public static final String CONF = "spark.lorafleet.faults";

  /** Where a fault acts. */
  public enum Action { FAIL, NAN, DIVERGE, OVERFLOW, KILL, KILL_DRIVER_IN_CHECKPOINT, KILL_DRIVER_IN_PUBLISH, FILL_DISK_IN_CHECKPOINT, PAUSE }

  /** One fault; attempt 0 means every attempt, run -1 every run. */
  public record Fault(Action action, int step, int rank, int attempt, int run) implements Serializable {}

  public FaultPlan {
    faults = List.copyOf(faults);
  }

  public static FaultPlan none() {
    return new FaultPlan(List.of());
  }

  /** The plan of the calling thread's Spark job: its local property, else the application's conf. */
  public static FaultPlan of(SparkContext sc) {
    String spec = Optional.ofNullable(sc.getLocalProperty(CONF)).orElse(sc.getConf().get(CONF, ""));
    FaultPlan plan = parse(spec);
    if (sc.isLocal() && plan.faults().stream().anyMatch(f -> f.action() == Action.KILL)) {
      throw new IllegalArgumentException(CONF + ": 'kill' would kill the driver in local mode (workers share its JVM); use 'fail'");
    }
    return plan;
  }

  public static FaultPlan parse(String spec) {
    List<Fault> out = new ArrayList<>();
    for (String part : spec.split(",")) {
      String p = part.trim();
      if (p.isEmpty()) {
        continue;
      }
      String[] fields = p.split(":");
      int at = fields[0].indexOf('@');
      if (at < 0) {
        throw new IllegalArgumentException(CONF + ": expected ACTION@STEP[:rank=R][:attempt=A|*][:run=K] but found '" + p + "'");
      }
      Action action = switch (fields[0].substring(0, at)) {
        case "fail" -> Action.FAIL;
        case "kill" -> Action.KILL;
        case "nan" -> Action.NAN;
        case "diverge" -> Action.DIVERGE;
        case "overflow" -> Action.OVERFLOW;
        case "kill-driver-in-checkpoint" -> Action.KILL_DRIVER_IN_CHECKPOINT;
        case "kill-driver-in-publish" -> Action.KILL_DRIVER_IN_PUBLISH;
        case "fill-disk-in-checkpoint" -> Action.FILL_DISK_IN_CHECKPOINT;
        case "pause" -> Action.PAUSE;
        default -> throw new IllegalArgumentException(CONF + ": unknown action '" + fields[0].substring(0, at)
            + "', expected fail, nan, diverge, overflow, kill, kill-driver-in-checkpoint, kill-driver-in-publish, fill-disk-in-checkpoint or pause");
      };
      int step = number(p, fields[0].substring(at + 1));
      int rank = 0;
      int attempt = 1;
      int run = -1;
      for (int i = 1; i < fields.length; i++) {
        String[] kv = fields[i].split("=", 2);
        if (kv.length == 2 && kv[0].equals("rank")) {
          rank = number(p, kv[1]);
        } else if (kv.length == 2 && kv[0].equals("attempt")) {
          attempt = kv[1].equals("*") ? 0 : number(p, kv[1]);
        } else if (kv.length == 2 && kv[0].equals("run")) {
          run = number(p, kv[1]);
        } else {
          throw new IllegalArgumentException(CONF + ": unknown field '" + fields[i] + "' in '" + p + "', expected rank=R, attempt=A|* or run=K");
        }
      }
      out.add(new Fault(action, step, rank, attempt, run));
    }
    return new FaultPlan(out);
  }

  private static int number(String fault, String v) {
    try {
      int n = Integer.parseInt(v.trim());
      if (n >= 0) {
        return n;
      }
    } catch (NumberFormatException ignored) {
      // reported below
    }
    throw new IllegalArgumentException(CONF + ": expected a non-negative integer but found '" + v + "' in '" + fault + "'");
  }

  private boolean hits(Action a, int step, int rank, int attempt) {
    return hits(a, step, rank, attempt, -1);
  }

  /** Whether a fault of {@code a} acts at this step, rank and attempt, for run {@code run} (-1: a driver-side point, any run). */
  private boolean hits(Action a, int step, int rank, int attempt, int run) {
    return faults.stream().anyMatch(f -> f.action() == a && f.step() == step && f.rank() == rank && (f.attempt() == 0 || f.attempt() == attempt)
        && (f.run() < 0 || run < 0 || f.run() == run));
  }

  /** Called by a worker before it computes {@code step} of run {@code run}. */
  void beforeWorkerStep(int step, int rank, int attempt, int run) {
    if (hits(Action.KILL, step, rank, attempt, run)) {
      killThisJvm();
    }
    if (hits(Action.FAIL, step, rank, attempt, run)) {
      throw new IllegalStateException("injected fault: rank " + rank + " fails at step " + step + " (attempt " + attempt + ")");
    }
  }

  /** True when a worker must report an fp16 overflow at this step. */
  boolean overflows(int step, int rank, int attempt, int run) {
    return hits(Action.OVERFLOW, step, rank, attempt, run);
  }

  /** True when a worker must back-propagate a NaN loss scale at this step. */
  boolean diverges(int step, int rank, int attempt, int run) {
    return hits(Action.DIVERGE, step, rank, attempt, run);
  }

  /** True when a worker must replace its gradient by NaN at this step. */
  boolean poisons(int step, int rank, int attempt, int run) {
    return hits(Action.NAN, step, rank, attempt, run);
  }

  /** Called by the driver between writing checkpoint-{@code step}'s adapter into {@code output} and the rest of it. */
  public void inCheckpoint(int step, java.nio.file.Path output) {
    if (faults.stream().anyMatch(f -> f.action() == Action.KILL_DRIVER_IN_CHECKPOINT && f.step() == step)) {
      killThisJvm();
    }
    if (faults.stream().anyMatch(f -> f.action() == Action.FILL_DISK_IN_CHECKPOINT && f.step() == step)) {
      fill(output.resolve(".tmp-filler"));
    }
  }

  /** Called by the driver while it uploads checkpoint-{@code step}, after its first file. */
  public void inPublish(int step) {
    if (faults.stream().anyMatch(f -> f.action() == Action.KILL_DRIVER_IN_PUBLISH && f.step() == step)) {
      killThisJvm();
    }
  }

  /** Called by the driver once step {@code step} is recorded: a pause there holds the run until the test releases it. */
  public void afterDriverStep(int step, int attempt, RunOutput output) {
    if (!hits(Action.PAUSE, step, 0, attempt)) {
      return;
    }
    String paused = "_paused-" + step;
    String resume = "_resume-" + step;
    try {
      output.replace(paused, new byte[0]);
      while (output.read(resume).isEmpty()) {
        Thread.sleep(20); // waiting on the test's signal, not on a timer
      }
    } catch (IOException e) {
      throw new java.io.UncheckedIOException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted while paused at step " + step, e);
    }
    try { // the signals are the test's: a test that made the storage refuse writes meanwhile sees the run go on to its next write
      output.delete(paused);
      output.delete(resume);
    } catch (IOException e) {
      org.slf4j.LoggerFactory.getLogger(FaultPlan.class).warn("could not remove the pause signals of step {}: {}", step, e.toString());
    }
  }

  /** Appends to {@code file} until its filesystem is full. */
  private static void fill(java.nio.file.Path file) {
    byte[] block = new byte[1 << 16];
    try (var out = java.nio.file.Files.newOutputStream(file, java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.APPEND)) {
      for (long written = 0; written < (1L << 34); written += block.length) {
        out.write(block);
        out.flush();
      }
    } catch (IOException full) {
      return; // No space left on device: what was asked for
    }
    throw new IllegalStateException("fill-disk-in-checkpoint: wrote 16 GiB to " + file + " without filling its filesystem; use a small tmpfs");
  }

  /** SIGKILL, as the OOM killer or a preempted node delivers it: no shutdown hooks, no flushing. */
  private static void killThisJvm() {
    try {
      new ProcessBuilder("kill", "-9", Long.toString(ProcessHandle.current().pid())).inheritIO().start().waitFor();
      Thread.sleep(60_000); // the signal lands asynchronously
    } catch (IOException | InterruptedException e) {
      Runtime.getRuntime().halt(137);
    }
    Runtime.getRuntime().halt(137);
  }
}
