package io.lorafleet.driver.executor;

import io.lorafleet.driver.allreduce.GradientServer;
import io.lorafleet.driver.allreduce.SumTree;
import io.lorafleet.driver.kernels.Kernels;
import io.lorafleet.worker.train.NonFiniteGradientException;
import io.lorafleet.worker.train.StepResult;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;

/**
 * One run's gradient and loss sums over a worker's slots of a step, node by node of the slot tree:
 * the slots' results arrive in slot order, and a node's sum is its left child's buffer plus its
 * right child's, added the moment the right one completes, exactly as {@link SumTree#sum} adds, so
 * the node sums do not depend on which worker computes them or on how the slots were computed (one
 * run's micro-batch alone, or several runs' rows in one pass). At most one buffer per tree level is
 * alive. A slot whose backward pass finds NaN or infinity is recorded (an fp16 overflow as a flag,
 * an fp32 divergence as a NaN at the tensor it named and the slot as the culprit), never thrown.
 */
final class SlotSums {
  /** A node's gradient sum and loss sum. */
  record Partial(float[] grad, double loss) {}

  /** A fault plan's faults at the worker's first slot: an fp16 overflow reported, a NaN put into its gradient. */
  record FirstSlotFaults(boolean overflow, boolean poison) {}

  private final List<SumTree.Node> cover;
  private final int first;
  private final int size;
  private final boolean fp16;
  private final FirstSlotFaults faults;
  /** Completed subtrees of the node being summed, leftmost at the bottom. */
  private final Deque<Map.Entry<SumTree.Node, Partial>> open = new ArrayDeque<>();
  private final Map<SumTree.Node, Partial> done = new HashMap<>();
  private int next;
  /** Target tokens (a classifier's rows) over the slots added so far. */
  long tokens;
  /** {@link GradientServer#FLAG_SCALED} for fp16 compute, plus {@link GradientServer#FLAG_OVERFLOW} once a slot overflowed. */
  int flags;
  /** The first slot whose gradient held NaN or infinity (-1: none). */
  int culprit = -1;

  /**
   * @param cover the maximal tree nodes inside the worker's slots, in slot order ({@link SumTree#cover})
   * @param size the adapter's flat size
   * @param fp16 whether the step computes in fp16 (a non-finite gradient is then an overflow)
   */
  SlotSums(List<SumTree.Node> cover, int size, boolean fp16, FirstSlotFaults faults) {
    this.cover = List.copyOf(cover);
    this.first = cover.get(0).lo();
    this.next = first;
    this.size = size;
    this.fp16 = fp16;
    this.faults = faults;
    this.flags = fp16 ? GradientServer.FLAG_SCALED : 0;
  }

  /** The next slot's result: {@code step} runs its forward and backward (it may throw {@link NonFiniteGradientException}). */
  void add(Supplier<StepResult> step) {
    int j = next++;
    StepResult r;
    try {
      r = step.get();
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
    SumTree.Node node = new SumTree.Node(j, j + 1);
    Partial p = new Partial(r.gradSum(), r.lossSum());
    SumTree.Node target = cover.stream().filter(c -> c.contains(j)).findFirst().orElseThrow(
        () -> new IllegalStateException("slot " + j + " lies outside " + cover));
    // fold: while the open subtree on top is this one's left sibling, their parent is complete
    while (!node.equals(target) && !open.isEmpty() && parentOf(target, open.peek().getKey(), node)) {
      Map.Entry<SumTree.Node, Partial> left = open.pop();
      Kernels.add(left.getValue().grad(), p.grad(), 0, p.grad().length);
      node = new SumTree.Node(left.getKey().lo(), node.hi());
      p = new Partial(left.getValue().grad(), left.getValue().loss() + p.loss());
    }
    if (node.equals(target)) {
      done.put(node, p);
    } else {
      open.push(Map.entry(node, p));
    }
  }

  /** Whether {@code left} and {@code right} are the two children of one node of the tree under {@code top}. */
  private static boolean parentOf(SumTree.Node top, SumTree.Node left, SumTree.Node right) {
    if (left.hi() != right.lo()) {
      return false;
    }
    SumTree.Node parent = new SumTree.Node(left.lo(), right.hi());
    return SumTree.isNodeUnder(top, parent) && parent.left().equals(left) && parent.right().equals(right);
  }

  /** Node {@code at}'s sums, once all its slots were added. */
  Partial of(SumTree.Node at) {
    Partial p = done.get(at);
    if (p == null) {
      throw new IllegalStateException(at + " is not complete: slots added up to " + (next - 1));
    }
    return p;
  }
}
