package io.lorafleet.driver.allreduce;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.security.InvalidKeyException;
import java.security.NoSuchAlgorithmException;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * The gradient channel's framing. Handshake: server sends MAGIC and a random nonce; the worker
 * answers MAGIC, job id, rank and HMAC-SHA256(secret, jobId|rank|nonce); the server answers ACCEPT
 * or REJECT with a reason. Then per step the server sends PARAMS(step, n floats) and each worker
 * PUSH(job id, step, target tokens, loss sum, compute nanoseconds, n floats); DONE ends the job. Floats travel
 * little-endian in bulk.
 */
final class Wire {
  static final int MAGIC = 0x4c4f5241; // "LORA"
  static final int ACCEPT = 1;
  static final int REJECT = 2;
  static final int PARAMS = 3;
  static final int PUSH = 4;
  static final int DONE = 5;

  private Wire() {}

  static byte[] hmac(byte[] secret, String jobId, int rank, long nonce) {
    try {
      Mac mac = Mac.getInstance("HmacSHA256");
      mac.init(new SecretKeySpec(secret, "HmacSHA256"));
      return mac.doFinal((jobId + "|" + rank + "|" + nonce).getBytes(java.nio.charset.StandardCharsets.UTF_8));
    } catch (NoSuchAlgorithmException | InvalidKeyException e) {
      throw new IllegalStateException(e);
    }
  }

  static void writeFloats(DataOutputStream out, float[] v) throws IOException {
    out.writeInt(v.length);
    ByteBuffer b = ByteBuffer.allocate(v.length * 4).order(ByteOrder.LITTLE_ENDIAN);
    b.asFloatBuffer().put(v);
    out.write(b.array());
  }

  /** Reads a float array, refusing any length other than {@code expected} before reading its body. */
  static float[] readFloats(DataInputStream in, int expected, String what) throws IOException {
    int n = in.readInt();
    if (n != expected) {
      throw new ProtocolException(what + " holds " + n + " floats but the adapter has " + expected);
    }
    byte[] raw = new byte[n * 4];
    in.readFully(raw);
    float[] v = new float[n];
    ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(v);
    return v;
  }

  /** A peer broke the protocol: wrong job, step, size or credentials. */
  static final class ProtocolException extends IOException {
    ProtocolException(String m) {
      super(m);
    }
  }
}
