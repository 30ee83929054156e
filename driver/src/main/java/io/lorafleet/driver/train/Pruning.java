package io.lorafleet.driver.train;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.TreeSet;

/**
 * Successive halving over a job's runs (the synchronous form of ASHA, Li et al. 2020, as Ray Tune's
 * ASHAScheduler applies it to trials): at each rung step, once every active run has reached it, the
 * runs are ranked by their validation loss at that step and all but the best
 * ceil(keep-fraction · n) are stopped. A pruned run keeps its checkpoint of that step and says why
 * it stopped; its share of every later step goes to the runs that remain.
 */
public final class Pruning {
  /**
   * --prune-at and --keep-fraction.
   *
   * @param rungs the steps at which runs are ranked (ascending; empty: no pruning)
   * @param keepFraction the fraction of the active runs kept at each rung, in (0, 1)
   */
  public record Settings(List<Integer> rungs, double keepFraction) {
    public static final Settings NONE = new Settings(List.of(), 0.5);

    public Settings {
      rungs = List.copyOf(rungs);
      for (int i = 0; i < rungs.size(); i++) {
        if (rungs.get(i) < 1 || (i > 0 && rungs.get(i) <= rungs.get(i - 1))) {
          throw new IllegalArgumentException("--prune-at takes ascending steps >= 1 but found " + rungs);
        }
      }
      if (!(keepFraction > 0 && keepFraction < 1)) {
        throw new IllegalArgumentException("--keep-fraction must lie in (0, 1) but found " + keepFraction);
      }
    }

    /** Every run must be evaluated at every rung (its --eval-every divides the rung), so that the ranking is by that step's validation loss. */
    void check(List<TrainConfig> runs, List<String> names) {
      if (rungs.isEmpty()) {
        return;
      }
      if (runs.size() < 2) {
        throw new IllegalArgumentException("--prune-at ranks the runs of a multi-run job but this job has one run");
      }
      for (int i = 0; i < runs.size(); i++) {
        int every = runs.get(i).eval().every();
        for (int r : rungs) {
          if (every == 0 || r % every != 0) {
            throw new IllegalArgumentException("run " + names.get(i) + ": --prune-at " + r + " ranks runs by their validation loss at step " + r
                + " but its --eval-every " + every + " does not evaluate there; set eval-every to a divisor of every rung");
          }
        }
      }
    }
  }

  private final Settings settings;
  private final TreeSet<Integer> pending;

  private Pruning(Settings settings, TreeSet<Integer> pending) {
    this.settings = settings;
    this.pending = pending;
  }

  /** The rungs still ahead of the job's runs (a resumed job applied the ones it passed before). */
  static Pruning of(Settings settings, List<JobRun> runs) {
    int reached = runs.stream().filter(JobRun::active).mapToInt(r -> r.next).min().orElse(Integer.MAX_VALUE);
    TreeSet<Integer> pending = new TreeSet<>(settings.rungs());
    pending.headSet(reached, true).clear();
    return new Pruning(settings, pending);
  }

  /** After a tick: applies every rung that all active runs have reached. */
  void afterTick(List<JobRun> runs, List<RunSteps> steppers) throws IOException {
    while (!pending.isEmpty()) {
      int rung = pending.first();
      List<Integer> active = new ArrayList<>();
      for (int i = 0; i < runs.size(); i++) {
        if (runs.get(i).active()) {
          active.add(i);
        }
      }
      if (active.stream().anyMatch(i -> runs.get(i).next < rung)) {
        return;
      }
      pending.remove(rung);
      int n = active.size();
      int keep = (int) Math.ceil(settings.keepFraction() * n);
      if (n < 2 || keep >= n) {
        continue;
      }
      // the best validation loss first; a tie keeps the job's order
      active.sort(Comparator.comparingDouble(i -> steppers.get(i).lastValidationLoss().orElse(Double.POSITIVE_INFINITY)));
      for (int k = keep; k < n; k++) {
        int i = active.get(k);
        double loss = steppers.get(i).lastValidationLoss().orElse(Double.NaN);
        steppers.get(i).prune("at rung " + rung + " its validation loss " + loss + " ranked " + (k + 1) + " of " + n + " runs; --keep-fraction "
            + settings.keepFraction() + " keeps the best " + keep);
      }
    }
  }
}
