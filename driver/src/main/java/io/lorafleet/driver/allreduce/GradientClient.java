package io.lorafleet.driver.allreduce;

import io.lorafleet.driver.kernels.Kernels;
import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.security.MessageDigest;
import java.util.Optional;

/** A worker's end of the gradient channel; see {@link Wire} for the protocol. */
public final class GradientClient implements AutoCloseable {
  /**
   * The adapter values the driver sent: for a training step, or, with {@code evaluate}, one after
   * another for each of {@code candidates} adapters to score on validation rows, or
   * validation loss after step {@code step}, or, with {@code initialize}, for DoRA's initial
   * magnitudes ({@link #pushInit}); {@code run} names the adapter of a multi-run job (0 for a single run),
   * and {@code more} how many more adapters of the same tick follow (the worker computes at 0).
   */
  public record Params(int step, int run, float[] values, boolean evaluate, double lossScale, boolean initialize, int candidates, int more) {
    public Params(int step, float[] values, boolean evaluate, double lossScale) {
      this(step, 0, values, evaluate, lossScale, false, 1, 0);
    }

    /** Candidate {@code c}'s values of an evaluation. */
    public float[] candidate(int c) {
      int n = values.length / candidates;
      return java.util.Arrays.copyOfRange(values, c * n, (c + 1) * n);
    }
  }

  private final Socket socket;
  private final DataInputStream in;
  private final DataOutputStream out;
  /** Each run's adapter size, in floats. */
  private final int[] sizes;
  private final Transport transport;
  private byte[] params = new byte[0];
  private byte[] pushed = new byte[0];
  private Wire.Channel fromServer;
  private Wire.Channel toServer;

  private GradientClient(Socket s, int[] sizes, Transport transport) throws IOException {
    this.socket = s;
    this.in = new DataInputStream(new BufferedInputStream(s.getInputStream(), 1 << 16));
    this.out = new DataOutputStream(new BufferedOutputStream(s.getOutputStream(), 1 << 16));
    this.sizes = sizes.clone();
    this.transport = transport;
  }

  /** The connection of one slot's worker, pushing fp32. */
  public static GradientClient connect(String host, int port, String jobId, byte[] secret, int slot, int size, int timeoutMs) throws IOException {
    return connect(host, port, jobId, secret, new SumTree.Node(slot, slot + 1), size, timeoutMs, Transport.FP32);
  }

  /**
   * The connection that speaks for the slots of {@code node} (any range of them), pushing the sums of
   * the tree nodes inside it in {@code transport}.
   */
  public static GradientClient connect(String host, int port, String jobId, byte[] secret, SumTree.Node node, int size, int timeoutMs,
      Transport transport) throws IOException {
    return connect(host, port, jobId, secret, node, new int[] {size}, timeoutMs, transport);
  }

  /** As above, for a job of several runs whose adapters hold {@code sizes[run]} floats each. */
  public static GradientClient connect(String host, int port, String jobId, byte[] secret, SumTree.Node node, int[] sizes, int timeoutMs,
      Transport transport) throws IOException {
    Socket s = new Socket();
    try {
      s.connect(new InetSocketAddress(host, port), timeoutMs);
      s.setTcpNoDelay(true);
      s.setSoTimeout(timeoutMs);
      GradientClient c = new GradientClient(s, sizes, transport);
      c.handshake(host + ":" + port, jobId, secret, node);
      return c;
    } catch (IOException | RuntimeException e) {
      s.close();
      throw e;
    }
  }

  private void handshake(String where, String jobId, byte[] secret, SumTree.Node node) throws IOException {
    if (in.readInt() != Wire.MAGIC) {
      throw new IOException(where + " is not a lorafleet gradient server");
    }
    int version = in.readInt();
    if (version != Wire.VERSION) {
      throw new IOException(where + " speaks gradient protocol version " + version + " but this worker speaks " + Wire.VERSION
          + "; the driver and the executors run different lorafleet jars");
    }
    byte[] serverNonce = new byte[Wire.NONCE_BYTES];
    in.readFully(serverNonce);
    byte[] clientNonce = Wire.nonce();
    out.writeInt(Wire.MAGIC);
    out.writeInt(Wire.VERSION);
    out.writeInt(node.lo());
    out.writeInt(node.hi());
    out.write(clientNonce);
    out.write(Wire.hmac(secret, "hello", jobId, node, serverNonce, clientNonce));
    out.flush();
    int answer = in.readInt();
    if (answer != Wire.ACCEPT) {
      throw new IOException("gradient server " + where + " refused " + node + " (wrong job secret, a slot already taken, or a late connection)");
    }
    byte[] proof = new byte[Wire.MAC_BYTES];
    in.readFully(proof);
    if (!MessageDigest.isEqual(proof, Wire.hmac(secret, "accept", jobId, node, serverNonce, clientNonce))) {
      throw new IOException(where + " accepted " + node + " without proving it holds the job secret; not this job's driver");
    }
    fromServer = Wire.Channel.of(secret, "s2c", jobId, node, serverNonce, clientNonce);
    toServer = Wire.Channel.of(secret, "c2s", jobId, node, serverNonce, clientNonce);
  }

  /** The next step's adapter, or empty when the driver says training is done. */
  public Optional<Params> next() throws IOException {
    in.mark(8);
    int type = in.readInt();
    int length = in.readInt();
    in.reset();
    if (type == Wire.DONE) {
      fromServer.read(in, Wire.DONE, 0, "end of training");
      return Optional.empty();
    }
    boolean evaluate = type == Wire.EVAL;
    boolean initialize = type == Wire.INIT;
    int t = evaluate ? Wire.EVAL : initialize ? Wire.INIT : Wire.PARAMS;
    int headerLength = evaluate ? Wire.EVAL_HEADER : Wire.PARAMS_HEADER;
    // the run comes first in the header after the step; its adapter's size is what this worker was told, not what the message says
    in.mark(16);
    in.skipNBytes(12);
    int run = in.readInt();
    in.reset();
    if (run < 0 || run >= sizes.length) {
      throw new Wire.ProtocolException("the driver sent the adapter of run " + run + " but this job has runs 0.." + (sizes.length - 1));
    }
    int size = sizes[run];
    // an evaluation carries K adapters: K is what the length says, refused unless whole and within bounds
    long perCandidate = 4L * size;
    int k = evaluate && length > headerLength && (length - headerLength) % perCandidate == 0 ? (int) ((length - headerLength) / perCandidate) : 1;
    k = Math.min(k, Wire.MAX_CANDIDATES);
    if (params.length != perCandidate * k) {
      params = new byte[(int) (perCandidate * k)];
    }
    ByteBuffer b = ByteBuffer.wrap(fromServer.readHead(in, t, headerLength, params.length, "adapter broadcast"));
    in.readFully(params);
    fromServer.verify(in, t, b.array(), params.length, Wire.Digest.of(params, 0, params.length), "adapter broadcast");
    float[] values = new float[size * k];
    Transport.FP32.decode(params, 0, size * k, values, 0);
    int step = b.getInt();
    b.getInt(); // the run, read above (and covered by the tag just verified)
    if (evaluate) {
      int said = b.getInt();
      if (said != k) {
        throw new Wire.ProtocolException("an evaluation says " + said + " candidates but carries " + k);
      }
      return Optional.of(new Params(step, run, values, true, 1.0, false, k, 0));
    }
    double scale = b.getDouble();
    int more = b.getInt();
    if (more < 0 || more >= Wire.MAX_TURNS) {
      throw new Wire.ProtocolException("an adapter broadcast says " + more + " more follow in its tick; expected 0 to " + (Wire.MAX_TURNS - 1));
    }
    return Optional.of(new Params(step, run, values, false, scale, initialize, 1, more));
  }

  /**
   * A push of one node's sum: a peer whose slots are one node of the tree.
   *
   * @param tokens what the loss is averaged over: target tokens, or a classifier's rows
   * @param inputTokens the step's input tokens, padding excluded (for the driver's metrics)
   * @param computeNanos the worker's forward+backward time for this step (for the driver's metrics)
   * @param flags {@link GradientServer#FLAG_OVERFLOW} and {@link GradientServer#FLAG_SCALED}, or 0
   */
  public void push(int step, long tokens, long inputTokens, double lossSum, long computeNanos, int flags, float[] gradSum) throws IOException {
    push(step, 0, tokens, inputTokens, computeNanos, flags, -1, new double[] {lossSum}, java.util.List.of(gradSum));
  }

  /**
   * The step's push: the gradient and loss sums of each tree node inside this peer's slots, in slot
   * order ({@link SumTree#cover}), for the adapter of run {@code run}; {@code nonFiniteSlot} names
   * the first slot whose own gradient held NaN or infinity (-1: none).
   */
  public void push(int step, int run, long tokens, long inputTokens, long computeNanos, int flags, int nonFiniteSlot, double[] lossSums,
      java.util.List<float[]> gradSums) throws IOException {
    int k = gradSums.size();
    if (lossSums.length != k) {
      throw new IllegalArgumentException("a push holds one loss sum a node but found " + lossSums.length + " for " + k + " nodes");
    }
    ByteBuffer h = ByteBuffer.allocate(Wire.pushHeader(k)).putInt(step).putInt(run).putLong(tokens).putLong(inputTokens).putLong(computeNanos).putInt(flags)
        .putInt(nonFiniteSlot);
    for (double l : lossSums) {
      h.putDouble(l);
    }
    int n = gradSums.get(0).length;
    int bytes = (int) (k * transport.bytes(n));
    if (pushed.length != bytes) {
      pushed = new byte[bytes];
    }
    // chunk c of every node in turn, encoded in chunks on every core (chunk starts are multiples of the fp16 block)
    int chunk = StreamingReduce.chunk(n);
    Kernels.chunks(n, (from, to) -> {
      for (int c = from / chunk * chunk; c < to; c += chunk) { // whole chunks of the layout inside [from, to)
        int start = Math.max(c, from);
        int len = Math.min(Math.min(c + chunk, n), to) - start;
        for (int j = 0; j < k; j++) {
          transport.encode(gradSums.get(j), start, len, pushed, (int) (StreamingReduce.layout(transport, c, Math.min(chunk, n - c), j, k)
              + transport.offset(start) - transport.offset(c)));
        }
      }
    });
    toServer.write(out, Wire.PUSH, h.array(), pushed, bytes, Wire.Digest.of(pushed, 0, bytes));
  }

  /**
   * For a simulated worker (the bench package's CommBenchmark): reads the next broadcast into {@code scratch}
   * piece by piece and drops it, without checking its tag; false when the driver says training is
   * done. A real worker uses {@link #next()}.
   */
  public boolean skipNext(byte[] scratch) throws IOException {
    int type = in.readInt();
    int n = in.readInt();
    if (type == Wire.DONE) {
      return false;
    }
    for (long left = n; left > 0; ) {
      int k = (int) Math.min(scratch.length, left);
      in.readFully(scratch, 0, k);
      left -= k;
    }
    in.readFully(scratch, 0, Wire.MAC_BYTES);
    return true;
  }

  /** For a simulated worker: the digest of an encoded payload, computed once for {@link #pushEncoded}. */
  public static byte[] digest(byte[] payload) {
    return Wire.Digest.of(payload, 0, payload.length);
  }

  /** For a simulated worker: pushes a payload encoded and digested once, reused every step. */
  public void pushEncoded(int step, long tokens, byte[] payload, byte[] digest) throws IOException {
    byte[] header = ByteBuffer.allocate(Wire.pushHeader(1)).putInt(step).putInt(0).putLong(tokens).putLong(tokens).putLong(0).putInt(0).putInt(-1)
        .putDouble(tokens).array();
    toServer.write(out, Wire.PUSH, header, payload, payload.length, digest);
  }

  /** Answers an INIT request: the adapter with DoRA's initial magnitudes set. */
  public void pushInit(float[] values) throws IOException {
    byte[] payload = new byte[4 * values.length];
    Transport.FP32.encode(values, 0, values.length, payload, 0);
    toServer.write(out, Wire.INIT_RESULT, new byte[0], payload, payload.length, Wire.Digest.of(payload, 0, payload.length));
  }

  /** Answers an evaluation request: this worker's (or executor's) scores of the {@code candidates}, encoded by the caller. */
  public void pushEval(int step, int run, int candidates, byte[] scores) throws IOException {
    toServer.write(out, Wire.EVAL_RESULT, ByteBuffer.allocate(Wire.EVAL_HEADER).putInt(step).putInt(run).putInt(candidates).array(), scores, scores.length,
        Wire.Digest.of(scores, 0, scores.length));
  }

  /** Replaces the session key this client signs with; tests use it to send pushes whose MAC fails. */
  void forgeSessionKey() {
    toServer = new Wire.Channel(new byte[32]);
  }

  @Override
  public void close() throws IOException {
    socket.close();
  }
}
