package io.lorafleet.driver.executor;

import io.lorafleet.driver.allreduce.GradientServer;
import io.lorafleet.driver.allreduce.SumTree;
import io.lorafleet.driver.kernels.Kernels;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.train.NonFiniteGradientException;
import io.lorafleet.worker.train.StepResult;
import java.util.List;
import java.util.function.Function;

/**
 * One worker's gradient and loss sums over its slots of a step, node by node of the slot tree: each
 * slot is one micro-batch's forward and backward, and a node is its left child plus its right,
 * exactly as {@link SumTree#sum} adds, so the node sums do not depend on which worker computes them.
 * Slots are computed as the recursion reaches them, so at most one gradient buffer per tree level
 * is alive. A slot whose backward pass finds NaN or infinity is recorded (an fp16 overflow as a flag,
 * an fp32 divergence as a NaN at the tensor it named and the slot as the culprit), never thrown.
 */
final class SlotSums {
  /** A node's gradient sum and loss sum. */
  record Partial(float[] grad, double loss) {}

  /** A fault plan's faults at the worker's first slot: an fp16 overflow reported, a NaN put into its gradient. */
  record FirstSlotFaults(boolean overflow, boolean poison) {}

  private final Function<Batch, StepResult> step;
  private final List<Batch> micro;
  private final int first;
  private final int size;
  private final boolean fp16;
  private final FirstSlotFaults faults;
  /** Target tokens (a classifier's rows) over the slots computed so far. */
  long tokens;
  /** {@link GradientServer#FLAG_SCALED} for fp16 compute, plus {@link GradientServer#FLAG_OVERFLOW} once a slot overflowed. */
  int flags;
  /** The first slot whose gradient held NaN or infinity (-1: none). */
  int culprit = -1;

  /**
   * @param step the forward and backward of one micro-batch (it may throw {@link NonFiniteGradientException})
   * @param micro the worker's slots' micro-batches, slot {@code first} first
   * @param size the adapter's flat size
   * @param fp16 whether the step computes in fp16 (a non-finite gradient is then an overflow)
   */
  SlotSums(Function<Batch, StepResult> step, List<Batch> micro, int first, int size, boolean fp16, FirstSlotFaults faults) {
    this.step = step;
    this.micro = micro;
    this.first = first;
    this.size = size;
    this.fp16 = fp16;
    this.faults = faults;
    this.flags = fp16 ? GradientServer.FLAG_SCALED : 0;
  }

  /** Node {@code at}'s sums. */
  Partial of(SumTree.Node at) {
    if (at.leaf()) {
      return slot(at.lo());
    }
    Partial l = of(at.left());
    Partial r = of(at.right());
    Kernels.add(l.grad(), r.grad(), 0, l.grad().length);
    return new Partial(l.grad(), l.loss() + r.loss());
  }

  private Partial slot(int j) {
    StepResult r;
    try {
      r = step.apply(micro.get(j - first));
    } catch (NonFiniteGradientException e) {
      r = new StepResult(new float[size], 0, 0);
      if (fp16) { // an overflow, reported as such (never as a NaN push); the driver skips the step
        flags |= GradientServer.FLAG_OVERFLOW;
      } else { // fp32: the step diverged. The push marks where, so the driver refuses the step naming this slot and tensor
        r.gradSum()[Math.max(0, e.at())] = Float.NaN;
        culprit = culprit < 0 ? j : culprit;
      }
    }
    if (j == first && faults.overflow()) {
      flags |= GradientServer.FLAG_OVERFLOW;
    }
    if (j == first && faults.poison()) {
      r.gradSum()[r.gradSum().length - 1] = Float.NaN;
      culprit = culprit < 0 ? j : culprit;
    }
    tokens += r.tokens();
    return new Partial(r.gradSum(), r.lossSum());
  }
}
