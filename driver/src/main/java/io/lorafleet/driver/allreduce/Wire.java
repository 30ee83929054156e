package io.lorafleet.driver.allreduce;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.security.InvalidKeyException;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.security.SecureRandom;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * The gradient channel's protocol (version {@value #VERSION}).
 *
 * <p>Handshake. The server sends MAGIC, VERSION and a 16-byte nonce. The worker answers MAGIC,
 * VERSION, its rank, a 16-byte nonce of its own and HMAC-SHA256(secret, "hello"|version|job|rank|
 * both nonces). The job id never travels in clear, and a recorded handshake replays against a new
 * server nonce in vain. The server answers ACCEPT plus its own proof, HMAC(secret, "accept"|…), so
 * the worker knows it reached the driver; or REJECT and nothing else, so a stranger learns nothing
 * about the job.
 *
 * <p>Messages. Both directions then derive a session key from the secret and both nonces, and every
 * message is TYPE, LENGTH, BODY and HMAC(session key of that direction, sequence number|TYPE|BODY).
 * The sequence number is counted by both ends, never sent, so a replayed, reordered or altered
 * message fails its MAC. The server sends PARAMS(step, loss scale, n floats), EVAL(step, loss scale, n
 * floats) and DONE; a
 * worker answers PARAMS with PUSH(step, target tokens, loss sum, compute nanoseconds, flags, n
 * floats) and EVAL with EVAL_RESULT(step, target tokens, loss sum) over its share of the
 * validation examples. Floats travel
 * little-endian in bulk. A length other than the one the adapter implies is refused before any
 * allocation.
 */
final class Wire {
  static final int MAGIC = 0x4c4f5241; // "LORA"
  static final int VERSION = 2;
  static final int ACCEPT = 1;
  static final int REJECT = 2;
  static final int PARAMS = 3;
  static final int PUSH = 4;
  static final int DONE = 5;
  static final int EVAL = 6;
  static final int EVAL_RESULT = 7;
  /** EVAL_RESULT: step, target tokens, loss sum. */
  static final int EVAL_RESULT_BYTES = 4 + 8 + 8;
  static final int NONCE_BYTES = 16;
  static final int MAC_BYTES = 32;
  /** PUSH header: step, tokens, loss sum, compute nanoseconds, flags. */
  static final int PUSH_HEADER = 4 + 8 + 8 + 8 + 4;
  /** PARAMS and EVAL header: step, loss scale. */
  static final int PARAMS_HEADER = 4 + 8;
  private static final SecureRandom RANDOM = new SecureRandom();

  private Wire() {}

  static byte[] nonce() {
    byte[] n = new byte[NONCE_BYTES];
    RANDOM.nextBytes(n);
    return n;
  }

  static byte[] hmac(byte[] key, String label, String jobId, int rank, byte[] serverNonce, byte[] clientNonce) {
    Mac mac = mac(key);
    mac.update((label + "|" + VERSION + "|" + jobId + "|" + rank + "|").getBytes(StandardCharsets.UTF_8));
    mac.update(serverNonce);
    mac.update(clientNonce);
    return mac.doFinal();
  }

  static Mac mac(byte[] key) {
    try {
      Mac mac = Mac.getInstance("HmacSHA256");
      mac.init(new SecretKeySpec(key, "HmacSHA256"));
      return mac;
    } catch (NoSuchAlgorithmException | InvalidKeyException e) {
      throw new IllegalStateException(e);
    }
  }

  /** One direction of an authenticated session: its key and its message counter. */
  static final class Channel {
    private final Mac mac;
    private long seq;

    Channel(byte[] key) {
      this.mac = mac(key);
    }

    /** The session channel for {@code direction} ("s2c" or "c2s"). */
    static Channel of(byte[] secret, String direction, String jobId, int rank, byte[] serverNonce, byte[] clientNonce) {
      return new Channel(hmac(secret, direction, jobId, rank, serverNonce, clientNonce));
    }

    private byte[] tag(int type, byte[] body, int len) {
      mac.update(ByteBuffer.allocate(12).putLong(seq).putInt(type).array());
      mac.update(body, 0, len);
      seq++;
      return mac.doFinal();
    }

    void write(DataOutputStream out, int type, byte[] body) throws IOException {
      out.writeInt(type);
      out.writeInt(body.length);
      out.write(body);
      out.write(tag(type, body, body.length));
      out.flush();
    }

    /**
     * Reads one message of {@code type} whose body must be {@code length} bytes; anything else (other
     * type, other length, a MAC that does not verify) is refused. Returns the body.
     */
    byte[] read(DataInputStream in, int type, int length, String what) throws IOException {
      int t = in.readInt();
      if (t != type) {
        throw new ProtocolException("expected " + what + " (message type " + type + ") but got message type " + t);
      }
      int n = in.readInt();
      if (n != length) {
        throw new ProtocolException(what + " holds " + n + " bytes but " + length + " were expected ("
            + (length - headerOf(type)) / 4 + " floats)" + (n >= headerOf(type) && (n - headerOf(type)) % 4 == 0
                ? ": it holds " + (n - headerOf(type)) / 4 + " floats but the adapter has " + (length - headerOf(type)) / 4 : ""));
      }
      byte[] body = new byte[n];
      in.readFully(body);
      byte[] got = new byte[MAC_BYTES];
      in.readFully(got);
      if (!MessageDigest.isEqual(got, tag(t, body, n))) {
        throw new ProtocolException(what + ": message authentication failed (altered, replayed or forged)");
      }
      return body;
    }

    private static int headerOf(int type) {
      return type == PUSH ? PUSH_HEADER : type == PARAMS || type == EVAL ? PARAMS_HEADER : 0;
    }
  }

  static void putFloats(ByteBuffer b, float[] v) {
    b.order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().put(v);
    b.position(b.position() + 4 * v.length);
    b.order(ByteOrder.BIG_ENDIAN);
  }

  static float[] getFloats(ByteBuffer b, int n) {
    float[] v = new float[n];
    b.order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(v);
    b.position(b.position() + 4 * n);
    b.order(ByteOrder.BIG_ENDIAN);
    return v;
  }

  /** A peer broke the protocol: wrong credentials, step, size, or a message that fails its MAC. */
  static final class ProtocolException extends IOException {
    ProtocolException(String m) {
      super(m);
    }
  }
}
