package io.lorafleet.driver.allreduce;

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
import java.util.List;
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
 * server broadcasts the adapter and gathers every worker's gradient sum. A push with the wrong step,
 * size or MAC, or holding NaN or infinity, fails the step with a clear error and is never applied;
 * a worker that does not answer within the timeout fails the step instead of hanging the job.
 */
public final class GradientServer implements AutoCloseable {
  /** Push flag: the worker's fp16 gradient overflowed (a normal event under loss scaling: skip the step). */
  public static final int FLAG_OVERFLOW = 1;
  /** Push flag: the worker computed in fp16 and back-propagated the scaled loss; its gradient is scaled. */
  public static final int FLAG_SCALED = 2;
  private static final int MAX_PENDING_HANDSHAKES = 64;

  /** One worker's push for a step. */
  public record Push(int rank, float[] gradSum, long tokens, double lossSum, long computeNanos, int flags) {
    public boolean overflow() {
      return (flags & FLAG_OVERFLOW) != 0;
    }

    public boolean scaled() {
      return (flags & FLAG_SCALED) != 0;
    }
  }

  /** A push held NaN or infinity: the step must not reach the optimizer. */
  public static final class NonFiniteGradientException extends IOException {
    private final int step;

    NonFiniteGradientException(int step, String m) {
      super(m);
      this.step = step;
    }

    public int step() {
      return step;
    }
  }

  /** An authenticated worker's connection. */
  private record Peer(Socket socket, DataInputStream in, DataOutputStream out, Wire.Channel toWorker, Wire.Channel fromWorker) {}

  private final ServerSocket socket;
  private final String jobId;
  private final byte[] secret;
  private final int workers;
  private final int timeoutMs;
  private final int handshakeMs;
  private final IntFunction<String> tensorAt;
  private final Peer[] peers;
  private int connected;
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

  public GradientServer(String bindHost, String jobId, byte[] secret, int workers, int timeoutMs) throws IOException {
    this(bindHost, PortRange.ANY, jobId, secret, workers, timeoutMs, i -> "element " + i);
  }

  /**
   * @param bindHost the driver's address (never the wildcard on a cluster: the channel has no reason
   *     to listen on other interfaces)
   * @param tensorAt the name of the tensor holding flat element i, for error messages
   */
  public GradientServer(String bindHost, PortRange ports, String jobId, byte[] secret, int workers, int timeoutMs, IntFunction<String> tensorAt)
      throws IOException {
    this.socket = ports.bind(InetAddress.getByName(bindHost));
    this.jobId = jobId;
    this.secret = secret.clone();
    this.workers = workers;
    this.timeoutMs = timeoutMs;
    this.handshakeMs = Math.min(timeoutMs, 30_000);
    this.tensorAt = tensorAt;
    this.peers = new Peer[workers];
    this.io = Executors.newFixedThreadPool(workers, daemon("lorafleet-gradient-io"));
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
    int rank = in.readInt();
    byte[] clientNonce = new byte[Wire.NONCE_BYTES];
    in.readFully(clientNonce);
    byte[] mac = new byte[Wire.MAC_BYTES];
    in.readFully(mac);
    if (!MessageDigest.isEqual(mac, Wire.hmac(secret, "hello", jobId, rank, serverNonce, clientNonce))) {
      throw new Wire.ProtocolException("authentication failed for a peer claiming rank " + rank);
    }
    Peer p = new Peer(s, in, out, Wire.Channel.of(secret, "s2c", jobId, rank, serverNonce, clientNonce),
        Wire.Channel.of(secret, "c2s", jobId, rank, serverNonce, clientNonce));
    synchronized (this) {
      if (rank < 0 || rank >= workers || peers[rank] != null) {
        throw new Wire.ProtocolException("rank " + rank + " is invalid or already connected (workers: " + workers + ")");
      }
      out.writeInt(Wire.ACCEPT);
      out.write(Wire.hmac(secret, "accept", jobId, rank, serverNonce, clientNonce));
      out.flush();
      s.setSoTimeout(timeoutMs);
      peers[rank] = p;
      connected++;
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

  /** Waits until every rank has connected and authenticated; strangers are refused and closed. */
  public void awaitWorkers() throws IOException {
    awaitWorkers(() -> false);
  }

  /**
   * As {@link #awaitWorkers()}, but gives up as soon as {@code abandoned} says the workers will not
   * come (their stage has already failed), instead of waiting for the timeout. Connections that
   * arrive later are still answered, and refused (every rank is taken), so a late or hostile peer
   * gets the same treatment during the whole stage.
   */
  public void awaitWorkers(BooleanSupplier abandoned) throws IOException {
    long deadline = System.currentTimeMillis() + timeoutMs;
    synchronized (this) {
      while (connected < workers) {
        long left = deadline - System.currentTimeMillis();
        if (left <= 0) {
          throw new IOException("only " + connected + " of " + workers + " workers connected to the gradient channel within " + timeoutMs + " ms");
        }
        if (abandoned.getAsBoolean()) {
          throw new IOException("the worker stage ended after " + connected + " of " + workers + " workers connected");
        }
        try {
          wait(Math.min(left, 200));
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          throw new IOException("interrupted while waiting for workers", e);
        }
      }
    }
  }

  /** Sends the adapter for {@code step} to every worker and gathers their pushes, in rank order. */
  public Push[] exchange(int step, float[] params) throws IOException {
    return exchange(step, params, 1.0);
  }

  /** As {@link #exchange(int, float[])}; workers computing in fp16 back-propagate {@code lossScale} times the loss. */
  public Push[] exchange(int step, float[] params, double lossScale) throws IOException {
    ByteBuffer b = ByteBuffer.allocate(Wire.PARAMS_HEADER + 4 * params.length);
    b.putInt(step).putDouble(lossScale);
    Wire.putFloats(b, params);
    byte[] body = b.array();
    List<Future<Push>> fs = new ArrayList<>();
    for (int r = 0; r < workers; r++) {
      final int rank = r;
      fs.add(io.submit(() -> roundTrip(rank, step, body, params.length)));
    }
    Push[] out = new Push[workers];
    for (int r = 0; r < workers; r++) {
      try {
        out[r] = fs.get(r).get(timeoutMs + 1000L, TimeUnit.MILLISECONDS);
      } catch (ExecutionException e) {
        fs.forEach(f -> f.cancel(true));
        Throwable c = e.getCause();
        if (c instanceof NonFiniteGradientException nf) {
          throw new NonFiniteGradientException(step, nf.getMessage());
        }
        String why = c instanceof SocketTimeoutException ? "no answer within " + timeoutMs + " ms"
            : c instanceof java.io.EOFException || c instanceof java.net.SocketException ? "the worker's connection closed (" + c + ")" : c.getMessage();
        throw new IOException("step " + step + ", worker " + r + ": " + why, c);
      } catch (TimeoutException | InterruptedException e) {
        fs.forEach(f -> f.cancel(true));
        throw new IOException("step " + step + ", worker " + r + ": no answer within " + timeoutMs + " ms", e);
      }
    }
    return out;
  }

  private Push roundTrip(int rank, int step, byte[] params, int n) throws IOException {
    Peer p = peers[rank];
    p.toWorker().write(p.out(), Wire.PARAMS, params);
    bytesSent.addAndGet(8L + params.length + Wire.MAC_BYTES);
    ByteBuffer b = ByteBuffer.wrap(p.fromWorker().read(p.in(), Wire.PUSH, Wire.PUSH_HEADER + 4 * n, "rank " + rank + "'s push"));
    bytesReceived.addAndGet(8L + b.capacity() + Wire.MAC_BYTES);
    int s = b.getInt();
    long tokens = b.getLong();
    double loss = b.getDouble();
    long compute = b.getLong();
    int flags = b.getInt();
    if (s != step) {
      throw new Wire.ProtocolException("push for step " + s + " rejected, the current step is " + step);
    }
    if (tokens < 0 || (flags & ~(FLAG_OVERFLOW | FLAG_SCALED)) != 0) {
      throw new Wire.ProtocolException("push rejected: tokens " + tokens + ", flags " + flags);
    }
    float[] g = Wire.getFloats(b, n);
    if ((flags & FLAG_OVERFLOW) == 0) {
      if (!Double.isFinite(loss)) {
        throw new NonFiniteGradientException(step, "step " + step + ", rank " + rank + " pushed a non-finite loss sum " + loss);
      }
      for (int i = 0; i < n; i++) {
        if (!Float.isFinite(g[i])) {
          throw new NonFiniteGradientException(step, "step " + step + ", rank " + rank + " pushed a non-finite gradient (" + g[i] + ") for '"
              + tensorAt.apply(i) + "'; the step is not applied");
        }
      }
    }
    return new Push(rank, g, tokens, loss, compute, flags);
  }

  /**
   * Validation loss of {@code params} after step {@code step}: every worker evaluates its share of
   * the validation examples; returns the loss sum and the target-token count, added in rank order.
   */
  public double[] evaluate(int step, float[] params) throws IOException {
    ByteBuffer b = ByteBuffer.allocate(Wire.PARAMS_HEADER + 4 * params.length);
    b.putInt(step).putDouble(1.0);
    Wire.putFloats(b, params);
    byte[] body = b.array();
    List<Future<double[]>> fs = new ArrayList<>();
    for (int r = 0; r < workers; r++) {
      final int rank = r;
      fs.add(io.submit(() -> {
        Peer p = peers[rank];
        p.toWorker().write(p.out(), Wire.EVAL, body);
        ByteBuffer a = ByteBuffer.wrap(p.fromWorker().read(p.in(), Wire.EVAL_RESULT, Wire.EVAL_RESULT_BYTES, "rank " + rank + "'s validation loss"));
        int s = a.getInt();
        long tokens = a.getLong();
        double loss = a.getDouble();
        if (s != step || tokens < 0 || !Double.isFinite(loss)) {
          throw new Wire.ProtocolException("validation result rejected: step " + s + " (expected " + step + "), tokens " + tokens + ", loss sum " + loss);
        }
        return new double[] {loss, tokens};
      }));
    }
    double[] sum = new double[2];
    for (int r = 0; r < workers; r++) {
      try {
        double[] x = fs.get(r).get(timeoutMs + 1000L, TimeUnit.MILLISECONDS);
        sum[0] += x[0];
        sum[1] += x[1];
      } catch (ExecutionException e) {
        fs.forEach(f -> f.cancel(true));
        throw new IOException("validation after step " + step + ", worker " + r + ": " + e.getCause().getMessage(), e.getCause());
      } catch (TimeoutException | InterruptedException e) {
        fs.forEach(f -> f.cancel(true));
        throw new IOException("validation after step " + step + ", worker " + r + ": no answer within " + timeoutMs + " ms", e);
      }
    }
    return sum;
  }

  /** Tells every worker that training is over. */
  public void finish() {
    for (Peer p : peers) {
      if (p != null) {
        try {
          p.toWorker().write(p.out(), Wire.DONE, new byte[0]);
        } catch (IOException ignored) {
          // a worker that is gone needs no goodbye
        }
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
    for (Peer p : peers) {
      if (p != null) {
        p.socket().close();
      }
    }
  }
}
