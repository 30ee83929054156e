package io.lorafleet.driver.allreduce;

import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.util.Optional;

/** A worker's end of the gradient channel; see {@link Wire} for the protocol. */
public final class GradientClient implements AutoCloseable {
  /** The adapter values the driver sent for a step. */
  public record Params(int step, float[] values) {}

  private final Socket socket;
  private final DataInputStream in;
  private final DataOutputStream out;
  private final String jobId;
  private final int size;

  private GradientClient(Socket s, String jobId, int size) throws IOException {
    this.socket = s;
    this.in = new DataInputStream(new BufferedInputStream(s.getInputStream(), 1 << 16));
    this.out = new DataOutputStream(new BufferedOutputStream(s.getOutputStream(), 1 << 16));
    this.jobId = jobId;
    this.size = size;
  }

  public static GradientClient connect(String host, int port, String jobId, byte[] secret, int rank, int size, int timeoutMs) throws IOException {
    Socket s = new Socket();
    s.connect(new InetSocketAddress(host, port), timeoutMs);
    s.setTcpNoDelay(true);
    s.setSoTimeout(timeoutMs);
    GradientClient c = new GradientClient(s, jobId, size);
    if (c.in.readInt() != Wire.MAGIC) {
      s.close();
      throw new IOException(host + ":" + port + " is not a lorafleet gradient server");
    }
    long nonce = c.in.readLong();
    c.out.writeInt(Wire.MAGIC);
    c.out.writeUTF(jobId);
    c.out.writeInt(rank);
    c.out.write(Wire.hmac(secret, jobId, rank, nonce));
    c.out.flush();
    int answer = c.in.readInt();
    if (answer != Wire.ACCEPT) {
      String why = answer == Wire.REJECT ? c.in.readUTF() : "unexpected answer " + answer;
      s.close();
      throw new IOException("gradient server refused rank " + rank + ": " + why);
    }
    return c;
  }

  /** The next step's adapter, or empty when the driver says training is done. */
  public Optional<Params> next() throws IOException {
    int type = in.readInt();
    if (type == Wire.DONE) {
      return Optional.empty();
    }
    if (type != Wire.PARAMS) {
      throw new IOException("expected adapter values from the driver but got message type " + type);
    }
    int step = in.readInt();
    return Optional.of(new Params(step, Wire.readFloats(in, size, "adapter broadcast")));
  }

  /** @param computeNanos the worker's forward+backward time for this step (for the driver's metrics) */
  public void push(int step, long tokens, double lossSum, long computeNanos, float[] gradSum) throws IOException {
    pushRaw(jobId, step, tokens, lossSum, computeNanos, gradSum);
  }

  /** Sends a push with arbitrary fields; tests use it to check that bad pushes are refused. */
  void pushRaw(String job, int step, long tokens, double lossSum, long computeNanos, float[] gradSum) throws IOException {
    out.writeInt(Wire.PUSH);
    out.writeUTF(job);
    out.writeInt(step);
    out.writeLong(tokens);
    out.writeDouble(lossSum);
    out.writeLong(computeNanos);
    Wire.writeFloats(out, gradSum);
    out.flush();
  }

  @Override
  public void close() throws IOException {
    socket.close();
  }
}
