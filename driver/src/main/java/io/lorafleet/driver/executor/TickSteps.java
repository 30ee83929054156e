package io.lorafleet.driver.executor;

import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.model.Dropout;
import io.lorafleet.worker.train.MixedStep;
import io.lorafleet.worker.train.RecomputeStep;
import io.lorafleet.worker.train.TrainStep;
import java.util.ArrayList;
import java.util.List;

/**
 * One rank's tick: the step of every run the driver sent, slot by slot. At each slot the micro-
 * batches of the runs whose adapters are additive terms (LoRA, not DoRA, VeRA or AdaLoRA, nor
 * trained heads or biases) and whose steps run alike (the plain step, one loss scale) go through
 * the base together, one forward and one backward for all of them ({@link MixedStep}); any other
 * run's micro-batch runs alone, as a single-run job runs it. --mixed-runs caps the runs of one
 * pass (the mixable runs in job order, in groups of that many), which bounds the activations a pass
 * holds. Each run's result goes into its own
 * {@link SlotSums}, so a slot's gradient depends on which runs share the tick but never on the
 * number of workers.
 */
final class TickSteps {
  private TickSteps() {}

  /**
   * One run's share of the tick on this rank: its adapter's values, its micro-batches (one a slot,
   * the rank's first slot first), its dropout, the loss scale to back-propagate, whether its steps
   * recompute activations (gradient checkpointing), the sums its slots go into, and its rows' tokens.
   */
  record RunSlots(LoraModel lora, float[] values, List<Batch> micro, Dropout.Plan dropout, double scale, boolean recompute, SlotSums sums,
      long inputTokens) {
    /** Slot {@code j}'s forward and backward alone. */
    io.lorafleet.worker.train.StepResult alone(int j) {
      List<Batch> one = List.of(micro.get(j));
      return recompute ? RecomputeStep.run(lora, values, one, dropout, scale) : TrainStep.run(lora, values, one, dropout, scale);
    }

    boolean mixable(int j) {
      return !recompute && Double.isFinite(scale) && MixedStep.mixable(lora, micro.get(j));
    }
  }

  /** Computes every run's slots into its sums, slot by slot, at most {@code maxMixed} runs a pass (0: all). */
  static void run(List<RunSlots> runs, int maxMixed) {
    int slots = runs.get(0).micro().size();
    for (int j = 0; j < slots; j++) {
      List<Integer> mixable = new ArrayList<>();
      for (int i = 0; i < runs.size(); i++) {
        if (runs.get(i).mixable(j) && (mixable.isEmpty() || runs.get(mixable.get(0)).scale() == runs.get(i).scale())) {
          mixable.add(i);
        }
      }
      int group = maxMixed > 0 ? maxMixed : Math.max(1, mixable.size());
      List<Integer> mixed = new ArrayList<>();
      for (int from = 0; from < mixable.size(); from += group) {
        List<Integer> pass = mixable.subList(from, Math.min(mixable.size(), from + group));
        if (pass.size() < 2) {
          continue; // a pass of one run is its plain step
        }
        List<MixedStep.Part> parts = new ArrayList<>();
        for (int i : pass) {
          RunSlots r = runs.get(i);
          parts.add(new MixedStep.Part(r.lora(), r.values(), r.micro().get(j), r.dropout()));
        }
        List<MixedStep.Outcome> out = MixedStep.run(parts, runs.get(pass.get(0)).scale());
        for (int k = 0; k < pass.size(); k++) {
          runs.get(pass.get(k)).sums().add(out.get(k)::get);
        }
        mixed.addAll(pass);
      }
      for (int i = 0; i < runs.size(); i++) {
        if (!mixed.contains(i)) {
          final int slot = j;
          RunSlots r = runs.get(i);
          r.sums().add(() -> r.alone(slot));
        }
      }
    }
  }
}
