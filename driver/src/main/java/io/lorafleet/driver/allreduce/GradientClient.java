package io.lorafleet.driver.allreduce;

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
   * The adapter values the driver sent: for a training step, or, with {@code evaluate}, for
   * validation loss after step {@code step}.
   */
  public record Params(int step, float[] values, boolean evaluate, double lossScale) {}

  private final Socket socket;
  private final DataInputStream in;
  private final DataOutputStream out;
  private final int size;
  private Wire.Channel fromServer;
  private Wire.Channel toServer;

  private GradientClient(Socket s, int size) throws IOException {
    this.socket = s;
    this.in = new DataInputStream(new BufferedInputStream(s.getInputStream(), 1 << 16));
    this.out = new DataOutputStream(new BufferedOutputStream(s.getOutputStream(), 1 << 16));
    this.size = size;
  }

  public static GradientClient connect(String host, int port, String jobId, byte[] secret, int rank, int size, int timeoutMs) throws IOException {
    Socket s = new Socket();
    try {
      s.connect(new InetSocketAddress(host, port), timeoutMs);
      s.setTcpNoDelay(true);
      s.setSoTimeout(timeoutMs);
      GradientClient c = new GradientClient(s, size);
      c.handshake(host + ":" + port, jobId, secret, rank);
      return c;
    } catch (IOException | RuntimeException e) {
      s.close();
      throw e;
    }
  }

  private void handshake(String where, String jobId, byte[] secret, int rank) throws IOException {
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
    out.writeInt(rank);
    out.write(clientNonce);
    out.write(Wire.hmac(secret, "hello", jobId, rank, serverNonce, clientNonce));
    out.flush();
    int answer = in.readInt();
    if (answer != Wire.ACCEPT) {
      throw new IOException("gradient server " + where + " refused rank " + rank + " (wrong job secret, a rank already taken, or a late connection)");
    }
    byte[] proof = new byte[Wire.MAC_BYTES];
    in.readFully(proof);
    if (!MessageDigest.isEqual(proof, Wire.hmac(secret, "accept", jobId, rank, serverNonce, clientNonce))) {
      throw new IOException(where + " accepted rank " + rank + " without proving it holds the job secret; not this job's driver");
    }
    fromServer = Wire.Channel.of(secret, "s2c", jobId, rank, serverNonce, clientNonce);
    toServer = Wire.Channel.of(secret, "c2s", jobId, rank, serverNonce, clientNonce);
  }

  /** The next step's adapter, or empty when the driver says training is done. */
  public Optional<Params> next() throws IOException {
    in.mark(4);
    int type = in.readInt();
    in.reset();
    if (type == Wire.DONE) {
      fromServer.read(in, Wire.DONE, 0, "end of training");
      return Optional.empty();
    }
    boolean evaluate = type == Wire.EVAL;
    ByteBuffer b = ByteBuffer.wrap(fromServer.read(in, evaluate ? Wire.EVAL : Wire.PARAMS, Wire.PARAMS_HEADER + 4 * size, "adapter broadcast"));
    int step = b.getInt();
    double scale = b.getDouble();
    return Optional.of(new Params(step, Wire.getFloats(b, size), evaluate, scale));
  }

  /**
   * @param computeNanos the worker's forward+backward time for this step (for the driver's metrics)
   * @param flags {@link GradientServer#FLAG_OVERFLOW} and {@link GradientServer#FLAG_SCALED}, or 0
   */
  public void push(int step, long tokens, double lossSum, long computeNanos, int flags, float[] gradSum) throws IOException {
    ByteBuffer b = ByteBuffer.allocate(Wire.PUSH_HEADER + 4 * gradSum.length);
    b.putInt(step).putLong(tokens).putDouble(lossSum).putLong(computeNanos).putInt(flags);
    Wire.putFloats(b, gradSum);
    toServer.write(out, Wire.PUSH, b.array());
  }

  /** Answers an evaluation request: this worker's validation loss sum and target tokens. */
  public void pushEval(int step, long tokens, double lossSum) throws IOException {
    toServer.write(out, Wire.EVAL_RESULT, ByteBuffer.allocate(Wire.EVAL_RESULT_BYTES).putInt(step).putLong(tokens).putDouble(lossSum).array());
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
