package io.lorafleet.driver.train;

import io.lorafleet.driver.checkpoint.Checkpoints;
import java.io.IOException;
import java.util.List;
import java.util.Optional;

/**
 * One adapter a job trains, across its barrier stages: what stays fixed ({@link Stage.Run}), the
 * state it carries forward, what it has logged, the next step it runs and how it ended. A plain
 * {@code train} is a job of one run; a multi-run job trains several on the same base and workers,
 * each of them what it would be alone.
 */
final class JobRun {
  /** How a run stands. */
  enum Status {
    /** Still has steps to run. */
    ACTIVE("running"),
    /** Ran all its steps. */
    FINISHED("finished"),
    /** Early stopping ended it (--early-stopping-patience). */
    STOPPED_EARLY("stopped early"),
    /** Successive halving stopped it at a rung (--prune-at). */
    PRUNED("pruned"),
    /** Its gradient or update was not finite: in a job of several runs it stops alone. */
    DIVERGED("diverged");

    final String word;

    Status(String word) {
      this.word = word;
    }
  }

  /** The run's index in the job, which the wire carries to name its adapter. */
  final int index;
  /** Its name in a multi-run job ({@code runs/<name>/}); empty for a plain train. */
  final String name;
  final Stage.Run run;
  final TrainingState state;
  final Stage.Log log;
  /** log.losses().get(i) is the loss of step first + i + 1. */
  final int first;
  /** The next step to run. */
  int next;
  Status status = Status.ACTIVE;
  /** Why the run ended, when it did not simply finish. */
  String why = "";
  /** The step it ended at. */
  int endedAt;

  JobRun(int index, String name, Stage.Run run, TrainingState state, Stage.Log log, int start) {
    this.index = index;
    this.name = name;
    this.run = run;
    this.state = state;
    this.log = log;
    this.first = start;
    this.next = start;
  }

  TrainConfig cfg() {
    return run.cfg();
  }

  boolean active() {
    return status == Status.ACTIVE;
  }

  /** "run NAME: " in a multi-run job's messages, "" for a plain train's. */
  String prefix() {
    return name.isEmpty() ? "" : "run " + name + ": ";
  }

  /** Ends the run at {@code step} with {@code status}, saying why. */
  void end(Status status, int step, String why) {
    this.status = status;
    this.endedAt = step;
    this.why = why;
  }

  /** How a run ended, as its run_summary.json says. */
  record Ended(Status status, int step, String why) {}

  /**
   * How a run of an earlier attempt at this job ended when that was by pruning or divergence (its
   * run_summary.json says so): a resumed job leaves such a run as it is.
   */
  static Optional<Ended> endedBefore(java.nio.file.Path out) throws IOException {
    java.nio.file.Path f = out.resolve("run_summary.json");
    if (!java.nio.file.Files.isRegularFile(f)) {
      return Optional.empty();
    }
    com.fasterxml.jackson.databind.JsonNode n = new com.fasterxml.jackson.databind.ObjectMapper().readTree(f.toFile());
    for (Status s : List.of(Status.PRUNED, Status.DIVERGED)) {
      if (s.word.equals(n.path("status").asText())) {
        return Optional.of(new Ended(s, n.path("ended_at_step").asInt(), n.path("why").asText()));
      }
    }
    return Optional.empty();
  }

  /**
   * Back to the run's newest valid checkpoint after a failed stage (step 0 without one): the state,
   * the step losses and validation losses logged after it, and metrics.jsonl. Returns its step.
   */
  int rollBack(io.lorafleet.worker.model.BaseModel base, java.util.function.Supplier<float[]> init) throws IOException {
    log.ckpt().drain(); // the relaunch resumes from the newest checkpoint, so it must be on disk; a failed one stops the run
    Optional<Checkpoints.State> st = Checkpoints.latestValid(run.ro().local(), base);
    int resumeAt = st.map(Checkpoints.State::step).orElse(0);
    if (st.isPresent()) {
      state.restore(st.get());
    } else {
      state.reset(cfg(), run.lora(), init.get());
    }
    next = resumeAt;
    while (first + log.losses().size() > resumeAt) {
      log.losses().remove(log.losses().size() - 1);
    }
    log.valLosses().removeIf(v -> v[0] > resumeAt);
    log.metrics().restartAfter(resumeAt);
    return resumeAt;
  }
}
