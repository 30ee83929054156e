package io.lorafleet.driver.executor;

import io.lorafleet.driver.allreduce.GradientClient;
import io.lorafleet.driver.allreduce.SumTree;
import java.io.IOException;
import java.io.InterruptedIOException;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.BooleanSupplier;

/**
 * The workers of one executor that push as one peer: its first rank (the leader) holds the only
 * connection to the driver, hands each adapter broadcast to the others in the same JVM, and pushes
 * the sums of the {@link SumTree} nodes inside the group's slots, added from the members' own node
 * sums in the tree's order. Members never touch the network. A failure anywhere in the group wakes everyone in it, so Spark's barrier-stage
 * failure handling sees every task end.
 */
final class ExecutorGroup {
  private static final Map<String, ExecutorGroup> GROUPS = new ConcurrentHashMap<>();

  /**
   * One rank's result for a round: a training step's gradient and loss sums for each tree node
   * inside its slots, or its validation slots' scores (sums empty).
   *
   * @param culprit the first slot whose own gradient held NaN or infinity (-1: none)
   */
  record Contribution(int rank, Map<SumTree.Node, float[]> gradSums, Map<SumTree.Node, Double> lossSums, long tokens, long inputTokens,
      long computeNanos, int flags, int culprit, byte[] scores) {
    /** A validation round's contribution. */
    static Contribution scored(int rank, byte[] scores) {
      return new Contribution(rank, Map.of(), Map.of(), 0, 0, 0, 0, -1, scores);
    }
  }

  /** A round: the broadcasts it carries, a tick's adapters or one evaluation (empty: training is over). */
  record Round(long number, Optional<List<GradientClient.Params>> params) {}

  private final SumTree.Node node;
  private final int members;
  private final long timeoutMs;
  private long round;
  private Optional<List<GradientClient.Params>> current = Optional.empty();
  /** Each member's results for the current round, one a broadcast, by rank. */
  private final Map<Integer, List<Contribution>> contributions = new HashMap<>();
  private Throwable failed;

  private ExecutorGroup(SumTree.Node node, int members, long timeoutMs) {
    this.node = node;
    this.members = members;
    this.timeoutMs = timeoutMs;
  }

  /** The group of {@code members} ranks pushing the slots of {@code node} in stage {@code jobId}, made by whichever of its tasks comes first. */
  static ExecutorGroup join(String jobId, SumTree.Node node, int members, long timeoutMs) {
    return GROUPS.computeIfAbsent(jobId + "/" + node.lo() + "-" + node.hi(), k -> new ExecutorGroup(node, members, timeoutMs));
  }

  static void leave(String jobId, SumTree.Node node) {
    GROUPS.remove(jobId + "/" + node.lo() + "-" + node.hi());
  }

  SumTree.Node node() {
    return node;
  }

  /** Leader: hands the next broadcasts (empty at the end) to the members. */
  synchronized void publish(Optional<List<GradientClient.Params>> p) {
    round++;
    current = p;
    contributions.clear();
    notifyAll();
  }

  /** Member: waits for the round after {@code seen}. */
  synchronized Round next(long seen, BooleanSupplier cancelled) throws IOException {
    await(() -> round > seen, cancelled, "the adapter from the leader of " + node);
    return new Round(round, current);
  }

  /** Member: hands in its results for round {@code r}, one a broadcast. */
  synchronized void contribute(long r, List<Contribution> c) {
    if (r == round) {
      contributions.put(c.get(0).rank(), List.copyOf(c));
      notifyAll();
    }
  }

  /** Leader: the members' results for the current round, by rank (the leader's own excluded). */
  synchronized Map<Integer, List<Contribution>> gather(BooleanSupplier cancelled) throws IOException {
    await(() -> contributions.size() == members - 1, cancelled, "the gradients of " + node + " on this executor");
    return Map.copyOf(contributions);
  }

  /** Anyone: the group cannot go on. */
  synchronized void fail(Throwable why) {
    if (failed == null) {
      failed = why;
    }
    notifyAll();
  }

  private void await(BooleanSupplier ready, BooleanSupplier cancelled, String what) throws IOException {
    long deadline = System.currentTimeMillis() + timeoutMs;
    while (!ready.getAsBoolean()) {
      if (failed != null) {
        throw new IOException("a worker of " + node + " on this executor failed: " + failed.getMessage(), failed);
      }
      if (cancelled.getAsBoolean()) {
        throw new InterruptedIOException("the task was cancelled while waiting for " + what);
      }
      long left = deadline - System.currentTimeMillis();
      if (left <= 0) {
        throw new java.net.SocketTimeoutException("no sign of " + what + " within " + timeoutMs + " ms");
      }
      try {
        wait(Math.min(left, 200));
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new InterruptedIOException("interrupted while waiting for " + what);
      }
    }
  }
}
