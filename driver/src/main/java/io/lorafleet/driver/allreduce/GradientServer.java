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
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The driver's end of the per-step gradient channel (BarrierTaskContext.allGather costs ~1 s a
 * call, so steps do not use it). Workers connect and authenticate with the job's secret; each step
 * the server broadcasts the adapter and gathers every worker's gradient sum. A push with the wrong
 * job, step or size fails the step with a clear error and is never applied; a worker that does not
 * answer within the timeout fails the step instead of hanging the job.
 */
public final class GradientServer implements AutoCloseable {
  /** One worker's push for a step. */
  public record Push(int rank, float[] gradSum, long tokens, double lossSum, long computeNanos) {}

  private final ServerSocket socket;
  private final String jobId;
  private final byte[] secret;
  private final int workers;
  private final int timeoutMs;
  private final Socket[] peers;
  private final DataInputStream[] ins;
  private final DataOutputStream[] outs;
  private final ExecutorService io;
  private final AtomicLong bytesSent = new AtomicLong();
  private final AtomicLong bytesReceived = new AtomicLong();
  private final List<String> rejected = new ArrayList<>();

  public GradientServer(String bindHost, String jobId, byte[] secret, int workers, int timeoutMs) throws IOException {
    this.socket = new ServerSocket(0, 64, InetAddress.getByName(bindHost));
    this.jobId = jobId;
    this.secret = secret.clone();
    this.workers = workers;
    this.timeoutMs = timeoutMs;
    this.peers = new Socket[workers];
    this.ins = new DataInputStream[workers];
    this.outs = new DataOutputStream[workers];
    this.io = Executors.newFixedThreadPool(workers, r -> {
      Thread t = new Thread(r, "lorafleet-gradient-io");
      t.setDaemon(true);
      return t;
    });
  }

  public int port() {
    return socket.getLocalPort();
  }

  /** Reasons for refused connections so far (for logs and tests). */
  public synchronized List<String> rejected() {
    return List.copyOf(rejected);
  }

  /** Waits until every rank has connected and authenticated; strangers are refused and closed. */
  public void awaitWorkers() throws IOException {
    awaitWorkers(() -> false);
  }

  /**
   * As {@link #awaitWorkers()}, but gives up as soon as {@code abandoned} says the workers will not
   * come (their stage has already failed), instead of waiting for the timeout.
   */
  public void awaitWorkers(java.util.function.BooleanSupplier abandoned) throws IOException {
    long deadline = System.currentTimeMillis() + timeoutMs;
    SecureRandom rnd = new SecureRandom();
    int connected = 0;
    while (connected < workers) {
      long left = deadline - System.currentTimeMillis();
      if (left <= 0) {
        throw new IOException("only " + connected + " of " + workers + " workers connected to the gradient channel within " + timeoutMs + " ms");
      }
      if (abandoned.getAsBoolean()) {
        throw new IOException("the worker stage ended after " + connected + " of " + workers + " workers connected");
      }
      socket.setSoTimeout((int) Math.min(left, 500));
      Socket s;
      try {
        s = socket.accept();
      } catch (SocketTimeoutException e) {
        continue;
      }
      s.setTcpNoDelay(true);
      s.setSoTimeout(timeoutMs);
      DataInputStream in = new DataInputStream(new BufferedInputStream(s.getInputStream(), 1 << 16));
      DataOutputStream out = new DataOutputStream(new BufferedOutputStream(s.getOutputStream(), 1 << 16));
      try {
        long nonce = rnd.nextLong();
        out.writeInt(Wire.MAGIC);
        out.writeLong(nonce);
        out.flush();
        if (in.readInt() != Wire.MAGIC) {
          throw new Wire.ProtocolException("not a lorafleet worker (bad magic)");
        }
        String job = in.readUTF();
        int rank = in.readInt();
        byte[] mac = new byte[32];
        in.readFully(mac);
        if (!job.equals(jobId)) {
          throw new Wire.ProtocolException("job id '" + job + "' is not this job's '" + jobId + "'");
        }
        if (!MessageDigest.isEqual(mac, Wire.hmac(secret, job, rank, nonce))) {
          throw new Wire.ProtocolException("authentication failed for rank " + rank + " (wrong job secret)");
        }
        if (rank < 0 || rank >= workers || peers[rank] != null) {
          throw new Wire.ProtocolException("rank " + rank + " is invalid or already connected (workers: " + workers + ")");
        }
        out.writeInt(Wire.ACCEPT);
        out.flush();
        peers[rank] = s;
        ins[rank] = in;
        outs[rank] = out;
        connected++;
      } catch (IOException e) {
        synchronized (this) {
          rejected.add(e.getMessage());
        }
        try {
          out.writeInt(Wire.REJECT);
          out.writeUTF(String.valueOf(e.getMessage()));
          out.flush();
        } catch (IOException ignored) {
          // the peer may be gone already
        }
        s.close();
      }
    }
  }

  /** Sends the adapter for {@code step} to every worker and gathers their pushes, in rank order. */
  public Push[] exchange(int step, float[] params) throws IOException {
    List<Future<Push>> fs = new ArrayList<>();
    for (int r = 0; r < workers; r++) {
      final int rank = r;
      fs.add(io.submit(() -> roundTrip(rank, step, params)));
    }
    Push[] out = new Push[workers];
    for (int r = 0; r < workers; r++) {
      try {
        out[r] = fs.get(r).get(timeoutMs + 1000L, TimeUnit.MILLISECONDS);
      } catch (ExecutionException e) {
        fs.forEach(f -> f.cancel(true));
        Throwable c = e.getCause();
        throw new IOException("step " + step + ", worker " + r + ": " + (c instanceof SocketTimeoutException ? "no answer within " + timeoutMs + " ms" : c.getMessage()), c);
      } catch (TimeoutException | InterruptedException e) {
        fs.forEach(f -> f.cancel(true));
        throw new IOException("step " + step + ", worker " + r + ": no answer within " + timeoutMs + " ms", e);
      }
    }
    return out;
  }

  private Push roundTrip(int rank, int step, float[] params) throws IOException {
    DataOutputStream out = outs[rank];
    out.writeInt(Wire.PARAMS);
    out.writeInt(step);
    Wire.writeFloats(out, params);
    out.flush();
    bytesSent.addAndGet(12L + 4L * params.length);
    DataInputStream in = ins[rank];
    int type = in.readInt();
    if (type != Wire.PUSH) {
      throw new Wire.ProtocolException("expected a gradient push but got message type " + type);
    }
    String job = in.readUTF();
    int s = in.readInt();
    long tokens = in.readLong();
    double loss = in.readDouble();
    long compute = in.readLong();
    if (!job.equals(jobId)) {
      throw new Wire.ProtocolException("push for job '" + job + "' rejected, this is job '" + jobId + "'");
    }
    if (s != step) {
      throw new Wire.ProtocolException("push for step " + s + " rejected, the current step is " + step);
    }
    if (tokens < 0 || !Double.isFinite(loss)) {
      throw new Wire.ProtocolException("push rejected: tokens " + tokens + ", loss sum " + loss);
    }
    float[] g = Wire.readFloats(in, params.length, "push");
    bytesReceived.addAndGet(48L + 4L * g.length);
    return new Push(rank, g, tokens, loss, compute);
  }

  /** Tells every worker that training is over. */
  public void finish() {
    for (DataOutputStream out : outs) {
      if (out != null) {
        try {
          out.writeInt(Wire.DONE);
          out.flush();
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
    io.shutdownNow();
    for (Socket s : peers) {
      if (s != null) {
        s.close();
      }
    }
    socket.close();
  }
}
