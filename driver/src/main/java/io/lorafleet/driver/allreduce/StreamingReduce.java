package io.lorafleet.driver.allreduce;

import io.lorafleet.driver.kernels.Kernels;
import java.io.DataInputStream;
import java.io.IOException;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.IntFunction;

/**
 * One step's gradient reduce, done while the pushes stream in. Each input (a peer: a worker, or an
 * executor that pre-reduced its workers) pushes the sums of its {@link SumTree} nodes, interleaved
 * chunk by chunk ({@link #layout}): chunk c of its first node, chunk c of its second, and so on. An
 * input is read on its own I/O thread. The thread that delivers the last node's chunk c adds that
 * chunk over the tree, so the sum is the same whatever the arrival order, and chunks are added on as
 * many threads as are receiving. An input may run at most {@code depth} chunks ahead of the slowest;
 * beyond that its thread stops reading and TCP holds the sender back, so memory is nodes × depth ×
 * chunk values however large the adapter. Non-finite values are only recorded here: the step fails
 * once the push's tag has verified (so a forged push is reported as forged, not as a diverged worker).
 */
final class StreamingReduce {
  /** Values per chunk (1 MiB of fp32): a multiple of {@link Transport#BLOCK}, at home in L2. */
  static final int CHUNK = 1 << 18;
  /** Chunks an input may be ahead of the slowest one. */
  static final int DEPTH = 4;

  /**
   * A push's header; {@code lossSums} holds each pushed node's loss sum, {@code culprit} the first
   * slot whose own gradient held NaN or infinity (-1: none).
   */
  record Header(int step, long tokens, long inputTokens, long computeNanos, int flags, int culprit, double[] lossSums) {}

  /** Values per chunk for an adapter of n values: the same on both ends of the channel. */
  static int chunk(int n) {
    return Math.max(1, Math.min(CHUNK, n));
  }

  /**
   * Where chunk [from, from + len) of a push's node j of k starts in its payload: the chunks of its
   * nodes interleave, so the driver can add chunk c as soon as every node's chunk c is in. With one
   * node this is the plain encoding of the values.
   */
  static long layout(Transport t, int from, int len, int j, int k) {
    return k * t.offset(from) + j * (t.offset(from + len) - t.offset(from));
  }

  private final int n;
  private final int chunk;
  private final int chunks;
  private final List<List<SumTree.Node>> inputs;
  /** Input i's node j is leaf first[i] + j of the reduce. */
  private final int[] first;
  private final int leaves;
  private final SumTree.Node root;
  private final Transport transport;
  private final float[][][] ring;
  private final byte[][] wire;
  private final float[] out;
  private final double[] squares;
  private final AtomicInteger[] arrived;
  private final boolean[] done;
  private final Header[] headers;
  private final long timeoutMs;
  private final IntFunction<String> tensorAt;
  private final AtomicLong reduceNanos = new AtomicLong();
  private final AtomicLong digestNanos = new AtomicLong();
  private String nonFinite;
  private Throwable failed;

  /** Buffers reused from step to step: the ring of chunks of each pushed node and the wire bytes of each input. */
  static final class Buffers {
    final float[][][] ring;
    final byte[][] wire;
    final int leaves;
    final int chunk;

    Buffers(int inputs, int leaves, int n, Transport t) {
      this.leaves = leaves;
      this.chunk = chunk(n);
      this.ring = new float[leaves][DEPTH][chunk];
      this.wire = new byte[inputs][(int) t.bytes(chunk)];
    }
  }

  /** @param inputs each input's pushed nodes, in the order its payload interleaves them */
  StreamingReduce(int n, List<List<SumTree.Node>> inputs, SumTree.Node root, Transport transport, Buffers buffers, float[] out, long timeoutMs,
      IntFunction<String> tensorAt) {
    this.n = n;
    this.chunk = buffers.chunk;
    this.chunks = n == 0 ? 0 : (n + chunk - 1) / chunk;
    this.inputs = inputs;
    this.first = new int[inputs.size()];
    int leaf = 0;
    for (int i = 0; i < inputs.size(); i++) {
      first[i] = leaf;
      leaf += inputs.get(i).size();
    }
    this.leaves = leaf;
    this.root = root;
    this.transport = transport;
    this.ring = buffers.ring;
    this.wire = buffers.wire;
    this.out = out;
    this.squares = new double[chunks];
    this.arrived = new AtomicInteger[chunks];
    for (int c = 0; c < chunks; c++) {
      arrived[c] = new AtomicInteger();
    }
    this.done = new boolean[chunks];
    this.headers = new Header[inputs.size()];
    this.timeoutMs = timeoutMs;
    this.tensorAt = tensorAt;
  }

  Header header(int input) {
    return headers[input];
  }

  /**
   * Reads input {@code i}'s values from {@code in} into the reduce, feeding {@code digest} with the
   * bytes as they come; {@code header} was read and checked before.
   */
  void receive(int i, Header header, DataInputStream in, Wire.Digest digest) throws IOException {
    headers[i] = header;
    boolean checkFinite = (header.flags() & GradientServer.FLAG_OVERFLOW) == 0;
    List<SumTree.Node> nodes = inputs.get(i);
    for (int c = 0; c < chunks; c++) {
      if (c >= DEPTH) {
        awaitDone(c - DEPTH);
      }
      int from = c * chunk;
      int len = Math.min(chunk, n - from);
      int bytes = (int) (transport.offset(from + len) - transport.offset(from));
      for (int j = 0; j < nodes.size(); j++) {
        in.readFully(wire[i], 0, bytes);
        long t0 = System.nanoTime();
        digest.update(wire[i], 0, bytes);
        digestNanos.addAndGet(System.nanoTime() - t0);
        float[] values = ring[first[i] + j][c % DEPTH];
        transport.decode(wire[i], 0, len, values, 0);
        if (checkFinite) {
          int bad = Kernels.firstNonFinite(values, 0, len);
          if (bad >= 0) {
            recordNonFinite(header, nodes.get(j), values[bad], from + bad);
            checkFinite = false;
          }
        }
        if (arrived[c].incrementAndGet() == leaves) {
          reduce(c, len);
        }
      }
    }
  }

  private void reduce(int c, int len) {
    long t0 = System.nanoTime();
    Map<SumTree.Node, float[]> pushed = new HashMap<>();
    for (int i = 0; i < inputs.size(); i++) {
      for (int j = 0; j < inputs.get(i).size(); j++) {
        pushed.put(inputs.get(i).get(j), ring[first[i] + j][c % DEPTH]);
      }
    }
    float[] sum = SumTree.sum(root, pushed, 0, len);
    System.arraycopy(sum, 0, out, c * chunk, len);
    squares[c] = Kernels.sumSquares(sum, 0, len);
    reduceNanos.addAndGet(System.nanoTime() - t0);
    synchronized (this) {
      done[c] = true;
      notifyAll();
    }
  }

  private synchronized void awaitDone(int c) throws IOException {
    long deadline = System.currentTimeMillis() + timeoutMs;
    while (!done[c]) {
      if (failed != null) {
        throw new IOException("the step was abandoned: " + failed.getMessage(), failed);
      }
      long left = deadline - System.currentTimeMillis();
      if (left <= 0) {
        throw new java.net.SocketTimeoutException("waited " + timeoutMs + " ms for the other workers' pushes to catch up");
      }
      try {
        wait(Math.min(left, 1000));
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new java.io.InterruptedIOException("interrupted while waiting for the other workers' pushes");
      }
    }
  }

  private synchronized void recordNonFinite(Header h, SumTree.Node node, float value, int index) {
    if (nonFinite == null) {
      boolean named = h.culprit() >= 0 && node.contains(h.culprit());
      String who = named ? "slot " + h.culprit() : node.toString();
      nonFinite = "step " + h.step() + ", " + who + " gave a non-finite gradient (" + value + ") for '" + tensorAt.apply(index) + "'"
          + (node.leaf() ? "" : " (in the sum pushed for " + node + ")") + "; the step is not applied";
    }
  }

  /** Another input failed: wake the waiting inputs so they give up too. */
  synchronized void fail(Throwable why) {
    if (failed == null) {
      failed = why;
    }
    notifyAll();
  }

  /** The first non-finite value recorded, as a message. */
  synchronized java.util.Optional<String> nonFinite() {
    return java.util.Optional.ofNullable(nonFinite);
  }

  /** Σ sum² over the whole reduced gradient, chunk by chunk in order. */
  double sumSquares() {
    double s = 0;
    for (double q : squares) {
      s += q;
    }
    return s;
  }

  long reduceNanos() {
    return reduceNanos.get();
  }

  long digestNanos() {
    return digestNanos.get();
  }
}
