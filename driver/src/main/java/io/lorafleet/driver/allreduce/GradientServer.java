package io.lorafleet.driver.allreduce;

import io.lorafleet.driver.kernels.Kernels;
import io.lorafleet.worker.train.NonFiniteGradientException;
import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.BooleanSupplier;
import java.util.function.IntFunction;

/**
 * The driver's end of the per-step gradient channel (BarrierTaskContext.allGather costs ~1 s a
 * call, so steps do not use it); {@link Wire} has the protocol. Handshakes run concurrently, each
 * under an overall deadline, so a peer that connects and trickles bytes delays nobody. Each step the
 * server broadcasts the adapter (encoded and digested once for all workers) and reduces the pushes
 * while they stream in ({@link StreamingReduce}), in the fixed order of {@link SumTree} over the
 * step's slots (micro-batches). A peer speaks for a range of slots (a worker's, or an executor's
 * workers' together) and pushes the sums of the maximal tree nodes inside it; the peers' ranges must
 * tile the slots exactly. The sum therefore does not depend on how many peers there are. A push with the wrong step, size or tag, or holding NaN or infinity, fails the
 * step with a clear error and is never applied; a worker that does not answer within the timeout
 * fails the step instead of hanging the job.
 */
public final class GradientServer implements AutoCloseable {
  /** Push flag: the worker's fp16 gradient overflowed (a normal event under loss scaling: skip the step). */
  public static final int FLAG_OVERFLOW = 1;
  /** Push flag: the worker computed in fp16 and back-propagated the scaled loss; its gradient is scaled. */
  public static final int FLAG_SCALED = 2;
  private static final int MAX_PENDING_HANDSHAKES = 64;

  /**
   * What one step's pushes came to: the gradient sum over every slot (valid until the next
   * exchange, which reuses the buffer), its Σ sum², target tokens (a classifier's rows), input
   * tokens (padding excluded), loss sum, the slowest peer's compute time, the node sums pushed,
   * and where the driver's time went.
   */
  public record Gathered(float[] sum, double sumSquares, long tokens, long inputTokens, double lossSum, long computeNanos, boolean overflow, boolean scaled,
      int pushes, long broadcastNanos, long reduceNanos, long digestNanos) {}

  /** An authenticated worker's connection, speaking for the slots of {@code node} and pushing {@code pushes}, the tree nodes inside them. */
  private record Peer(SumTree.Node node, List<SumTree.Node> pushes, Socket socket, DataInputStream in, DataOutputStream out, Wire.Channel toWorker, Wire.Channel fromWorker) {}

  private final ServerSocket socket;
  private final String jobId;
  private final byte[] secret;
  private final int slots;
  private final int timeoutMs;
  private final int handshakeMs;
  private final TensorNames tensorAt;
  private final Transport transport;
  /** Connected peers by their first slot; each slot is covered at most once. */
  private final java.util.TreeMap<Integer, Peer> peers = new java.util.TreeMap<>();
  private final boolean[] covered;
  private int connected;
  private List<Peer> inputs;
  /** Each run's reduction buffers and sum, reused step after step (a multi-run job alternates runs of other sizes). */
  private final Map<Integer, Reused> reused = new HashMap<>();
  private byte[] broadcast = new byte[0];
  private final ExecutorService io;
  private final ExecutorService handshakes;
  private final ScheduledExecutorService deadlines;
  private final AtomicInteger pending = new AtomicInteger();
  private final AtomicLong bytesSent = new AtomicLong();
  private final AtomicLong bytesReceived = new AtomicLong();
  /** The first refusals' reasons; a flood of strangers must not grow the driver's memory. */
  private final List<String> rejected = new ArrayList<>();
  private static final int KEPT_REASONS = 100;
  private final Thread acceptor;

  public GradientServer(String bindHost, String jobId, byte[] secret, int slots, int timeoutMs) throws IOException {
    this(bindHost, PortRange.ANY, jobId, secret, slots, timeoutMs, i -> "element " + i, Transport.FP32);
  }

  /**
   * @param bindHost the driver's address (never the wildcard on a cluster: the channel has no reason
   *     to listen on other interfaces)
   * @param tensorAt the name of the tensor holding flat element i, for error messages
   * @param slots the micro-batches of a step's global batch, which the peers' ranges tile
   * @param transport how the workers encode their pushes
   */
  public GradientServer(String bindHost, PortRange ports, String jobId, byte[] secret, int slots, int timeoutMs, IntFunction<String> tensorAt,
      Transport transport) throws IOException {
    this(bindHost, ports, jobId, secret, slots, timeoutMs, (run, i) -> tensorAt.apply(i), transport);
  }

  /** The name of the tensor holding flat element {@code element} of run {@code run}'s adapter, for error messages. */
  @FunctionalInterface
  public interface TensorNames {
    String at(int run, int element);
  }

  /** As the constructor above, for a job of several runs, whose adapters {@code tensorAt} names run by run. */
  public GradientServer(String bindHost, PortRange ports, String jobId, byte[] secret, int slots, int timeoutMs, TensorNames tensorAt,
      Transport transport) throws IOException {
    this.socket = ports.bind(InetAddress.getByName(bindHost));
    this.jobId = jobId;
    this.secret = secret.clone();
    this.slots = slots;
    this.timeoutMs = timeoutMs;
    this.handshakeMs = Math.min(timeoutMs, 30_000);
    this.tensorAt = tensorAt;
    this.transport = transport;
    this.covered = new boolean[slots];
    this.io = Executors.newFixedThreadPool(slots, daemon("lorafleet-gradient-io")); // threads start as peers need them: at most one a peer
    this.handshakes = Executors.newCachedThreadPool(daemon("lorafleet-gradient-handshake"));
    this.deadlines = Executors.newSingleThreadScheduledExecutor(daemon("lorafleet-gradient-deadline"));
    this.acceptor = daemon("lorafleet-gradient-accept").newThread(this::acceptLoop);
    acceptor.start();
  }

  private static java.util.concurrent.ThreadFactory daemon(String name) {
    return r -> {
      Thread t = new Thread(r, name);
      t.setDaemon(true);
      return t;
    };
  }

  public int port() {
    return socket.getLocalPort();
  }

  /** Reasons for the first refused connections (kept on the driver, never told to the peer). */
  public synchronized List<String> rejected() {
    return List.copyOf(rejected);
  }

  private void acceptLoop() {
    while (!socket.isClosed()) {
      Socket s;
      try {
        s = socket.accept();
      } catch (IOException closed) {
        return;
      }
      if (pending.incrementAndGet() > MAX_PENDING_HANDSHAKES) {
        pending.decrementAndGet();
        refuse(s, "too many handshakes in progress");
        continue;
      }
      // The deadline covers the whole handshake, however slowly the peer trickles its bytes.
      ScheduledFuture<?> deadline = deadlines.schedule(() -> closeQuietly(s), handshakeMs, TimeUnit.MILLISECONDS);
      handshakes.execute(() -> {
        try {
          handshake(s);
        } catch (IOException e) {
          refuse(s, s.isClosed() && e instanceof java.net.SocketException ? "no complete handshake within " + handshakeMs + " ms" : e.getMessage());
        } finally {
          deadline.cancel(false);
          pending.decrementAndGet();
        }
      });
    }
  }

  private void handshake(Socket s) throws IOException {
    s.setTcpNoDelay(true);
    s.setSoTimeout(handshakeMs);
    DataInputStream in = new DataInputStream(new BufferedInputStream(s.getInputStream(), 1 << 16));
    DataOutputStream out = new DataOutputStream(new BufferedOutputStream(s.getOutputStream(), 1 << 16));
    byte[] serverNonce = Wire.nonce();
    out.writeInt(Wire.MAGIC);
    out.writeInt(Wire.VERSION);
    out.write(serverNonce);
    out.flush();
    if (in.readInt() != Wire.MAGIC) {
      throw new Wire.ProtocolException("not a lorafleet worker (bad magic)");
    }
    int version = in.readInt();
    if (version != Wire.VERSION) {
      throw new Wire.ProtocolException("protocol version " + version + ", this driver speaks " + Wire.VERSION);
    }
    SumTree.Node node;
    try {
      node = new SumTree.Node(in.readInt(), in.readInt());
    } catch (IllegalArgumentException e) {
      throw new Wire.ProtocolException(e.getMessage());
    }
    byte[] clientNonce = new byte[Wire.NONCE_BYTES];
    in.readFully(clientNonce);
    byte[] mac = new byte[Wire.MAC_BYTES];
    in.readFully(mac);
    if (!MessageDigest.isEqual(mac, Wire.hmac(secret, "hello", jobId, node, serverNonce, clientNonce))) {
      throw new Wire.ProtocolException("authentication failed for a peer claiming " + node);
    }
    if (node.hi() > slots) {
      throw new Wire.ProtocolException(node + " lies outside the " + slots + " slots of a step");
    }
    Peer p = new Peer(node, SumTree.cover(slots, node), s, in, out, Wire.Channel.of(secret, "s2c", jobId, node, serverNonce, clientNonce),
        Wire.Channel.of(secret, "c2s", jobId, node, serverNonce, clientNonce));
    synchronized (this) {
      for (int r = node.lo(); r < node.hi(); r++) {
        if (covered[r]) {
          throw new Wire.ProtocolException(node + ": slot " + r + " is already connected (slots: " + slots + ")");
        }
      }
      out.writeInt(Wire.ACCEPT);
      out.write(Wire.hmac(secret, "accept", jobId, node, serverNonce, clientNonce));
      out.flush();
      s.setSoTimeout(timeoutMs);
      java.util.Arrays.fill(covered, node.lo(), node.hi(), true);
      peers.put(node.lo(), p);
      connected += node.size();
      notifyAll();
    }
  }

  private void refuse(Socket s, String why) {
    synchronized (this) {
      if (rejected.size() < KEPT_REASONS) {
        rejected.add(why);
      }
    }
    try {
      s.setSoTimeout(100);
      DataOutputStream out = new DataOutputStream(s.getOutputStream());
      out.writeInt(Wire.REJECT);
      out.flush();
    } catch (IOException ignored) {
      // the peer may be gone already
    }
    closeQuietly(s);
  }

  private static void closeQuietly(Socket s) {
    try {
      s.close();
    } catch (IOException ignored) {
      // closing is all we wanted
    }
  }

  /** Waits until every slot's peer has connected and authenticated; strangers are refused and closed. */
  public void awaitWorkers() throws IOException {
    awaitWorkers(() -> false);
  }

  /**
   * As {@link #awaitWorkers()}, but gives up as soon as {@code abandoned} says the workers will not
   * come (their stage has already failed), instead of waiting for the timeout. Connections that
   * arrive later are still answered, and refused (every slot is taken), so a late or hostile peer
   * gets the same treatment during the whole stage.
   */
  public void awaitWorkers(BooleanSupplier abandoned) throws IOException {
    long deadline = System.currentTimeMillis() + timeoutMs;
    synchronized (this) {
      while (connected < slots) {
        long left = deadline - System.currentTimeMillis();
        if (left <= 0) {
          throw new IOException("workers for only " + connected + " of " + slots + " slots connected to the gradient channel within " + timeoutMs
              + " ms");
        }
        if (abandoned.getAsBoolean()) {
          throw new IOException("the worker stage ended after workers for " + connected + " of " + slots + " slots connected");
        }
        try {
          wait(Math.min(left, 200));
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          throw new IOException("interrupted while waiting for workers", e);
        }
      }
      inputs = List.copyOf(peers.values());
    }
  }

  /** The node sums pushed each step, over all connections. */
  public synchronized int pushesPerStep() {
    return peers.values().stream().mapToInt(p -> p.pushes().size()).sum();
  }

  /** A run's reduction buffers, the sum they reduce into, and its broadcast buffer. */
  private record Reused(StreamingReduce.Buffers buffers, float[] sum, byte[] broadcast) {}

  /** One run's share of a tick: its adapter for its step, its gradients computed under {@code lossScale} (fp16; 1 in fp32). */
  public record Turn(int run, int step, float[] params, double lossScale) {}

  /**
   * A turn's outcome: its reduced sums, or why its gradient or loss was not finite. One run's
   * non-finite turn leaves the tick's other turns standing.
   */
  public record Outcome(Optional<Gathered> gathered, Optional<NonFiniteGradientException> nonFinite) {
    /** The sums, or the non-finite gradient thrown. */
    public Gathered get() {
      if (nonFinite.isPresent()) {
        throw nonFinite.get();
      }
      return gathered.orElseThrow();
    }
  }

  /** Sends the adapter for {@code step} to every worker and reduces their pushes. */
  public Gathered exchange(int step, float[] params) throws IOException {
    return exchange(0, step, params, 1.0);
  }

  /**
   * As {@link #exchange(int, float[])} for the adapter of run {@code run} (0 for a single-run job);
   * workers computing in fp16 back-propagate {@code lossScale} times the loss. The returned sum is
   * this run's buffer, valid until its next exchange.
   */
  public Gathered exchange(int run, int step, float[] params, double lossScale) throws IOException {
    return exchange(List.of(new Turn(run, step, params, lossScale))).get(0).get();
  }

  /**
   * A tick: every turn's adapter to every worker, each PARAMS saying how many more follow, so that a
   * worker holds them all before it computes (one forward and backward over the rows of all of them);
   * then every worker's pushes, one a turn in the same order, each reduced into its run's sum. A
   * connection that fails fails the tick; a turn whose gradient is not finite fails alone.
   */
  public List<Outcome> exchange(List<Turn> turns) throws IOException {
    int k = turns.size();
    if (k < 1 || k > Wire.MAX_TURNS) {
      throw new IllegalArgumentException("a tick carries 1 to " + Wire.MAX_TURNS + " runs' adapters but found " + k);
    }
    List<List<SumTree.Node>> nodes = inputs.stream().map(Peer::pushes).toList();
    int leaves = nodes.stream().mapToInt(List::size).sum();
    byte[][] headers = new byte[k][];
    byte[][] digests = new byte[k][];
    Reused[] bufs = new Reused[k];
    StreamingReduce[] reduces = new StreamingReduce[k];
    for (int t = 0; t < k; t++) {
      Turn turn = turns.get(t);
      int n = turn.params().length;
      headers[t] = ByteBuffer.allocate(Wire.PARAMS_HEADER).putInt(turn.step()).putInt(turn.run()).putDouble(turn.lossScale()).putInt(k - 1 - t).array();
      Reused r = reused.get(turn.run());
      if (r == null || r.buffers().leaves != leaves || r.buffers().wire.length != inputs.size() || r.sum().length != n) {
        r = new Reused(new StreamingReduce.Buffers(inputs.size(), leaves, n, transport), new float[n], new byte[4 * n]);
        reused.put(turn.run(), r);
      }
      bufs[t] = r;
      digests[t] = encodeBroadcast(turn.params(), r.broadcast());
      final int run = turn.run();
      reduces[t] = new StreamingReduce(n, nodes, SumTree.root(slots), transport, r.buffers(), r.sum(), timeoutMs, i -> tensorAt.at(run, i));
    }
    long[] written = new long[inputs.size()];
    List<Future<StreamingReduce.Header[]>> fs = new ArrayList<>();
    for (int i = 0; i < inputs.size(); i++) {
      final int input = i;
      fs.add(io.submit(() -> {
        try {
          return roundTrip(input, turns, headers, bufs, digests, reduces, written);
        } catch (IOException | RuntimeException e) {
          for (StreamingReduce r : reduces) {
            r.fail(e);
          }
          throw e;
        }
      }));
    }
    StreamingReduce.Header[][] got = new StreamingReduce.Header[inputs.size()][];
    for (int i = 0; i < inputs.size(); i++) {
      got[i] = await(fs, i, turns.get(0).step(), "");
    }
    long broadcastNanos = java.util.Arrays.stream(written).max().orElse(0);
    List<Outcome> out = new ArrayList<>();
    for (int t = 0; t < k; t++) {
      try {
        out.add(new Outcome(Optional.of(gathered(turns.get(t), t, got, nodes, leaves, reduces[t], bufs[t].sum(), broadcastNanos)), Optional.empty()));
      } catch (NonFiniteGradientException e) {
        reused.remove(turns.get(t).run()); // nothing is reused after a failed step
        out.add(new Outcome(Optional.empty(), Optional.of(e)));
      }
    }
    return out;
  }

  /** Turn {@code t}'s sums from the inputs' pushes: its gradient sum, loss over the slot tree, and token counts. */
  private Gathered gathered(Turn turn, int t, StreamingReduce.Header[][] got, List<List<SumTree.Node>> nodes, int leaves, StreamingReduce reduce,
      float[] sum, long broadcastNanos) throws Wire.ProtocolException {
    int step = turn.step();
    if (reduce.nonFinite().isPresent()) {
      throw new NonFiniteGradientException(reduce.nonFinite().get());
    }
    Map<SumTree.Node, Double> losses = new HashMap<>();
    long tokens = 0;
    long inputTokens = 0;
    long compute = 0;
    int flags = 0;
    int scaled = 0;
    for (int i = 0; i < got.length; i++) {
      StreamingReduce.Header h = got[i][t];
      for (int j = 0; j < nodes.get(i).size(); j++) {
        losses.put(nodes.get(i).get(j), h.lossSums()[j]);
      }
      tokens += h.tokens();
      inputTokens += h.inputTokens();
      compute = Math.max(compute, h.computeNanos());
      flags |= h.flags();
      scaled += (h.flags() & FLAG_SCALED) != 0 ? 1 : 0;
    }
    if (scaled != 0 && scaled != got.length) {
      throw new Wire.ProtocolException("step " + step + ": " + scaled + " of " + got.length + " pushes hold loss-scaled fp16 gradients and the rest "
          + "do not; every worker of a job must compute in the same dtype");
    }
    double loss = SumTree.sum(SumTree.root(slots), losses::get);
    if ((flags & FLAG_OVERFLOW) == 0 && !Double.isFinite(loss)) {
      throw new NonFiniteGradientException("step " + step + " gave a non-finite loss sum " + loss);
    }
    return new Gathered(sum, reduce.sumSquares(), tokens, inputTokens, loss, compute, (flags & FLAG_OVERFLOW) != 0, scaled > 0, leaves, broadcastNanos,
        reduce.reduceNanos(), reduce.digestNanos());
  }

  /** Encodes an adapter into {@code into} (fp32 little-endian) and returns its payload digest, computed once for all workers. */
  private static byte[] encodeBroadcast(float[] params, byte[] into) {
    Kernels.chunks(params.length, (from, to) -> Transport.FP32.encode(params, from, to - from, into, 4 * from));
    return Wire.Digest.of(into, 0, into.length);
  }

  /** Encodes the adapter into the shared broadcast buffer (INIT and its like) and returns its digest. */
  private byte[] encodeBroadcast(float[] params) {
    if (broadcast.length != 4 * params.length) {
      broadcast = new byte[4 * params.length];
    }
    return encodeBroadcast(params, broadcast);
  }

  private <T> T await(List<Future<T>> fs, int i, int step, String what) throws IOException {
    String who = what + "step " + step + ", " + inputs.get(i).node();
    try {
      return fs.get(i).get(timeoutMs + 1000L, TimeUnit.MILLISECONDS);
    } catch (ExecutionException e) {
      fs.forEach(f -> f.cancel(true));
      reused.clear();
      Throwable c = e.getCause();
      if (c instanceof NonFiniteGradientException nf) {
        throw nf;
      }
      String why = c instanceof SocketTimeoutException ? "no answer within " + timeoutMs + " ms"
          : c instanceof java.io.EOFException || c instanceof java.net.SocketException ? "the worker's connection closed (" + c + ")" : c.getMessage();
      throw new IOException(who + ": " + why, c);
    } catch (TimeoutException | InterruptedException e) {
      fs.forEach(f -> f.cancel(true));
      reused.clear();
      throw new IOException(who + ": no answer within " + timeoutMs + " ms", e);
    }
  }

  /** Input {@code i}'s side of a tick: every turn's adapter out, then its pushes back, one a turn, each into that turn's reduction. */
  private StreamingReduce.Header[] roundTrip(int i, List<Turn> turns, byte[][] headers, Reused[] bufs, byte[][] digests, StreamingReduce[] reduces,
      long[] written) throws IOException {
    Peer p = inputs.get(i);
    long t0 = System.nanoTime();
    for (int t = 0; t < turns.size(); t++) {
      int n = turns.get(t).params().length;
      p.toWorker().write(p.out(), Wire.PARAMS, headers[t], bufs[t].broadcast(), 4 * n, digests[t]);
      bytesSent.addAndGet(8L + headers[t].length + 4L * n + Wire.MAC_BYTES);
    }
    written[i] = System.nanoTime() - t0;
    StreamingReduce.Header[] got = new StreamingReduce.Header[turns.size()];
    for (int t = 0; t < turns.size(); t++) {
      got[t] = receive(p, i, turns.get(t).run(), turns.get(t).step(), turns.get(t).params().length, reduces[t]);
    }
    return got;
  }

  /** One push of input {@code i} for run {@code run}'s step, checked and reduced. */
  private StreamingReduce.Header receive(Peer p, int i, int run, int step, int n, StreamingReduce reduce) throws IOException {
    String what = p.node() + "'s push";
    int k = p.pushes().size();
    long payload = k * transport.bytes(n);
    int headerBytes = Wire.pushHeader(k);
    byte[] h;
    try {
      h = p.fromWorker().readHead(p.in(), Wire.PUSH, headerBytes, payload, what);
    } catch (Wire.LengthException e) {
      long found = e.found() - headerBytes;
      throw new Wire.ProtocolException(what + " holds " + e.found() + " bytes but " + (headerBytes + payload) + " were expected ("
          + k + " node sum" + (k == 1 ? "" : "s") + ")" + (found % k != 0 ? "" : transport.values(found / k).stream()
              .mapToObj(v -> ": it holds " + v + " " + transport.flag() + " values a node but the adapter has " + n).findFirst().orElse("")));
    }
    ByteBuffer b = ByteBuffer.wrap(h);
    int pushedStep = b.getInt();
    int pushedRun = b.getInt();
    long pushedTokens = b.getLong();
    long pushedInput = b.getLong();
    long pushedNanos = b.getLong();
    int pushedFlags = b.getInt();
    int culprit = b.getInt();
    double[] lossSums = new double[k];
    for (int j = 0; j < k; j++) {
      lossSums[j] = b.getDouble();
    }
    StreamingReduce.Header got = new StreamingReduce.Header(pushedStep, pushedTokens, pushedInput, pushedNanos, pushedFlags, culprit, lossSums);
    if (got.step() != step) {
      throw new Wire.ProtocolException("push for step " + got.step() + " rejected, the current step is " + step);
    }
    if (pushedRun != run) {
      throw new Wire.ProtocolException("push for run " + pushedRun + " rejected, step " + step + " is run " + run + "'s");
    }
    if (got.tokens() < 0 || got.inputTokens() < 0 || (got.flags() & ~(FLAG_OVERFLOW | FLAG_SCALED)) != 0
        || (got.culprit() != -1 && !p.node().contains(got.culprit()))) {
      throw new Wire.ProtocolException("push rejected: tokens " + got.tokens() + ", input tokens " + got.inputTokens() + ", flags " + got.flags()
          + ", non-finite slot " + got.culprit());
    }
    Wire.Digest d = new Wire.Digest();
    reduce.receive(i, got, p.in(), d);
    p.fromWorker().verify(p.in(), Wire.PUSH, h, payload, d.finish(), what);
    bytesReceived.addAndGet(8L + h.length + payload + Wire.MAC_BYTES);
    return got;
  }

  /**
   * Evaluates {@code candidates} (adapters of the layout's size: the live one and the running
   * averages) after step {@code step}: every worker scores its share of the validation examples,
   * all candidates in one pass. Returns each input's answer (its scores of every candidate, as the
   * worker encoded them) in the tree's order of inputs, for the caller to decode and add.
   */
  public List<byte[]> evaluate(int step, List<float[]> candidates) throws IOException {
    return evaluate(0, step, candidates);
  }

  /** As {@link #evaluate(int, List)}, for candidates of run {@code run}'s adapter, scored on that run's validation rows. */
  public List<byte[]> evaluate(int run, int step, List<float[]> candidates) throws IOException {
    int k = candidates.size();
    if (k < 1 || k > Wire.MAX_CANDIDATES) {
      throw new IllegalArgumentException("an evaluation carries 1 to " + Wire.MAX_CANDIDATES + " candidates but found " + k);
    }
    byte[] header = ByteBuffer.allocate(Wire.EVAL_HEADER).putInt(step).putInt(run).putInt(k).array();
    int n = candidates.get(0).length;
    byte[] payload = new byte[4 * n * k];
    for (int c = 0; c < k; c++) {
      Transport.FP32.encode(candidates.get(c), 0, n, payload, 4 * n * c);
    }
    byte[] digest = Wire.Digest.of(payload, 0, payload.length);
    List<Future<byte[]>> fs = new ArrayList<>();
    for (int i = 0; i < inputs.size(); i++) {
      Peer p = inputs.get(i);
      fs.add(io.submit(() -> {
        p.toWorker().write(p.out(), Wire.EVAL, header, payload, payload.length, digest);
        byte[][] a = p.fromWorker().readAny(p.in(), Wire.EVAL_RESULT, Wire.EVAL_HEADER, 1L << 30, p.node() + "'s validation scores");
        ByteBuffer h = ByteBuffer.wrap(a[0]);
        int s = h.getInt();
        int r = h.getInt();
        int got = h.getInt();
        if (s != step || r != run || got != k) {
          throw new Wire.ProtocolException("validation result rejected: step " + s + " (expected " + step + "), run " + r + " (expected " + run + "), "
              + got + " candidates (expected " + k + ")");
        }
        return a[1];
      }));
    }
    List<byte[]> out = new ArrayList<>();
    for (int i = 0; i < inputs.size(); i++) {
      out.add(await(fs, i, step, "validation after "));
    }
    return out;
  }

  /**
   * DoRA: sends the adapter to the peer of slot 0 and returns what it answers, the adapter with
   * the initial magnitudes that only the base weights give (the driver holds none).
   */
  public float[] initialize(float[] params) throws IOException {
    return initialize(0, params);
  }

  /** As {@link #initialize(float[])}, for run {@code run}'s adapter. */
  public float[] initialize(int run, float[] params) throws IOException {
    byte[] header = ByteBuffer.allocate(Wire.PARAMS_HEADER).putInt(-1).putInt(run).putDouble(1.0).putInt(0).array();
    byte[] digest = encodeBroadcast(params);
    Peer p = inputs.get(0);
    List<Future<float[]>> fs = List.of(io.submit(() -> {
      p.toWorker().write(p.out(), Wire.INIT, header, broadcast, broadcast.length, digest);
      String what = p.node() + "'s initial magnitudes";
      byte[] h = p.fromWorker().readHead(p.in(), Wire.INIT_RESULT, 0, broadcast.length, what);
      byte[] payload = new byte[broadcast.length];
      p.in().readFully(payload);
      p.fromWorker().verify(p.in(), Wire.INIT_RESULT, h, payload.length, Wire.Digest.of(payload, 0, payload.length), what);
      float[] out = new float[params.length];
      Transport.FP32.decode(payload, 0, params.length, out, 0);
      return out;
    }));
    return await(fs, 0, -1, "initialization before ");
  }

  /** Tells every worker that training is over. */
  public void finish() {
    for (Peer p : inputs == null ? List.<Peer>of() : inputs) {
      try {
        p.toWorker().write(p.out(), Wire.DONE, new byte[0]);
      } catch (IOException ignored) {
        // a worker that is gone needs no goodbye
      }
    }
  }

  public long bytesSent() {
    return bytesSent.get();
  }

  public long bytesReceived() {
    return bytesReceived.get();
  }

  @Override
  public void close() throws IOException {
    socket.close();
    io.shutdownNow();
    handshakes.shutdownNow();
    deadlines.shutdownNow();
    synchronized (this) {
      for (Peer p : peers.values()) {
        p.socket().close();
      }
    }
  }
}
