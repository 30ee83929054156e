package io.lorafleet.driver.allreduce;

import io.lorafleet.driver.kernels.Kernels;
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
 * VERSION, the slots [lo, hi) of the global batch it speaks for (a worker's, or its executor's
 * workers' together), a 16-byte nonce of its own and HMAC-SHA256(secret, "hello"|version|job|
 * lo-hi|both nonces). The job id never travels in clear, and a recorded handshake replays against a
 * new server nonce in vain. The server answers ACCEPT plus its own proof, HMAC(secret, "accept"|…),
 * so the worker knows it reached the driver; or REJECT and nothing else, so a stranger learns
 * nothing about the job.
 *
 * <p>Messages. Both directions then derive a session key from the secret and both nonces. Every
 * message is TYPE, LENGTH, HEADER, PAYLOAD and a tag, HMAC(session key of that direction,
 * sequence number|TYPE|header length|payload length|HEADER|digest(PAYLOAD)), where digest is
 * SHA-256 over the SHA-256 of each 1 MiB piece of the payload. Pieces hash in parallel and as they
 * stream in, and a broadcast's digest is computed once for all workers, so integrity costs one
 * SHA-256 pass over each byte (with the CPU's SHA instructions) and not one per worker. The
 * sequence number is counted by both ends, never sent, so a replayed, reordered or altered message
 * fails its tag. The server sends PARAMS(step, run, loss scale, more | n fp32), EVAL(step, run, candidates K | K·n fp32)
 * and DONE, where run names one of the job's adapters (a multi-run job trains several on one base; n
 * is that run's adapter size). A tick's PARAMS come one a run, each saying how many more follow; the
 * worker computes when it holds them all and answers each, in order, with PUSH(step, run, target tokens, input tokens, compute
 * nanoseconds, flags, non-finite slot, k loss sums | k·n values in the job's {@link Transport}), the sums of
 * the k maximal {@link SumTree} nodes inside its slots, their chunks interleaved ({@code StreamingReduce.layout}) and EVAL with EVAL_RESULT(step, run, K | each
 * candidate's scores, as the eval package's Scores encodes them) over its share of the validation examples, every
 * candidate evaluated in one mixed-adapter pass. Before the first step of a DoRA run, the
 * server sends INIT(step, run, loss scale, 0 | n fp32) to the peer holding slot 0, which answers
 * INIT_RESULT(| n fp32): the adapter with its magnitudes computed from the base weights it holds. Values travel little-endian. A length other
 * than the one the adapter implies is refused before any allocation.
 */
final class Wire {
  static final int MAGIC = 0x4c4f5241; // "LORA"
  // 4: PUSH carries the step's input tokens; 5: EVAL carries several candidates and EVAL_RESULT their scores;
  // 6: peers speak for slots of the global batch and push one sum (and loss sum) per maximal tree node inside them;
  // 7: PARAMS, INIT, EVAL, PUSH and EVAL_RESULT name the run (adapter) of a multi-run job they carry
  static final int VERSION = 7;
  static final int ACCEPT = 1;
  static final int REJECT = 2;
  static final int PARAMS = 3;
  static final int PUSH = 4;
  static final int DONE = 5;
  static final int EVAL = 6;
  static final int EVAL_RESULT = 7;
  /** DoRA: the server asks one worker for the initial magnitudes of the adapter it sends (step -1, loss scale 1 | n fp32). */
  static final int INIT = 8;
  /** The answer to INIT: the adapter with its magnitudes set (n fp32). */
  static final int INIT_RESULT = 9;
  /** EVAL and EVAL_RESULT header: step, run, candidates. */
  static final int EVAL_HEADER = 4 + 4 + 4;
  /** The most candidates one evaluation carries (the live adapter and the running averages, with room). */
  static final int MAX_CANDIDATES = 16;
  static final int NONCE_BYTES = 16;
  static final int MAC_BYTES = 32;
  /**
   * PUSH header: step, run, target tokens (a classifier's rows: what the loss is averaged over), input
   * tokens (padding excluded), compute nanoseconds, flags, the first slot whose gradient held NaN or
   * infinity (-1: none); then one loss sum per pushed node ({@link #pushHeader}).
   */
  static final int PUSH_HEADER = 4 + 4 + 8 + 8 + 8 + 4 + 4;

  /** A PUSH header's length for k pushed nodes. */
  static int pushHeader(int k) {
    return PUSH_HEADER + 8 * k;
  }
  /** PARAMS and INIT header: step, run, loss scale, and how many more PARAMS of the same tick follow (0: compute now). */
  static final int PARAMS_HEADER = 4 + 4 + 8 + 4;
  /** The most runs' adapters one tick carries. */
  static final int MAX_TURNS = 1024;
  /** Payload bytes per digested piece. */
  static final int PIECE = 1 << 20;
  private static final SecureRandom RANDOM = new SecureRandom();

  private Wire() {}

  static byte[] nonce() {
    byte[] n = new byte[NONCE_BYTES];
    RANDOM.nextBytes(n);
    return n;
  }

  /** HMAC of a handshake step for the peer speaking for {@code node}. */
  static byte[] hmac(byte[] key, String label, String jobId, SumTree.Node node, byte[] serverNonce, byte[] clientNonce) {
    Mac mac = mac(key);
    mac.update((label + "|" + VERSION + "|" + jobId + "|" + node.lo() + "-" + node.hi() + "|").getBytes(StandardCharsets.UTF_8));
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

  static MessageDigest sha256() {
    try {
      return MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  /** The digest of a payload fed in order, in pieces of any size. */
  static final class Digest {
    /** The digest of an empty payload, which messages without one (DONE, EVAL_RESULT) carry; never written to. */
    static final byte[] EMPTY = of(new byte[0], 0, 0);
    private final MessageDigest piece = sha256();
    private final MessageDigest all = sha256();
    private int inPiece;

    void update(byte[] b, int off, int len) {
      while (len > 0) {
        int n = Math.min(len, PIECE - inPiece);
        piece.update(b, off, n);
        inPiece += n;
        off += n;
        len -= n;
        if (inPiece == PIECE) {
          all.update(piece.digest());
          inPiece = 0;
        }
      }
    }

    byte[] finish() {
      if (inPiece > 0) {
        all.update(piece.digest());
        inPiece = 0;
      }
      return all.digest();
    }

    /** The digest of b[off, off + len), its pieces hashed on every core. */
    static byte[] of(byte[] b, int off, int len) {
      int pieces = (len + PIECE - 1) / PIECE;
      byte[][] d = new byte[pieces][];
      Kernels.parallel(pieces, p -> {
        MessageDigest m = sha256();
        m.update(b, off + p * PIECE, Math.min(PIECE, len - p * PIECE));
        d[p] = m.digest();
      });
      MessageDigest all = sha256();
      for (byte[] x : d) {
        all.update(x);
      }
      return all.digest();
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
    static Channel of(byte[] secret, String direction, String jobId, SumTree.Node node, byte[] serverNonce, byte[] clientNonce) {
      return new Channel(hmac(secret, direction, jobId, node, serverNonce, clientNonce));
    }

    private byte[] tag(int type, byte[] header, long payloadLength, byte[] digest) {
      mac.update(ByteBuffer.allocate(24).putLong(seq).putInt(type).putInt(header.length).putLong(payloadLength).array());
      mac.update(header);
      mac.update(digest);
      seq++;
      return mac.doFinal();
    }

    /** Writes a message whose payload is payload[0, length) and whose payload digest is {@code digest}. */
    void write(DataOutputStream out, int type, byte[] header, byte[] payload, int length, byte[] digest) throws IOException {
      out.writeInt(type);
      out.writeInt(header.length + length);
      out.write(header);
      out.write(payload, 0, length);
      out.write(tag(type, header, length, digest));
      out.flush();
    }

    /** Writes a message without payload. */
    void write(DataOutputStream out, int type, byte[] header) throws IOException {
      write(out, type, header, new byte[0], 0, Digest.EMPTY);
    }

    /**
     * Reads the type, length and header of a message of {@code type} whose payload must be
     * {@code payloadLength} bytes; anything else is refused. The caller then reads the payload and
     * calls {@link #verify}.
     */
    byte[] readHead(DataInputStream in, int type, int headerLength, long payloadLength, String what) throws IOException {
      int t = in.readInt();
      if (t != type) {
        throw new ProtocolException("expected " + what + " (message type " + type + ") but got message type " + t);
      }
      int n = in.readInt();
      if (n != headerLength + payloadLength) {
        throw new LengthException(what + " holds " + n + " bytes but " + (headerLength + payloadLength) + " were expected", n);
      }
      byte[] header = new byte[headerLength];
      in.readFully(header);
      return header;
    }

    /** Reads a message's tag and checks it against the header and payload digest read. */
    void verify(DataInputStream in, int type, byte[] header, long payloadLength, byte[] digest, String what) throws IOException {
      byte[] got = new byte[MAC_BYTES];
      in.readFully(got);
      if (!MessageDigest.isEqual(got, tag(type, header, payloadLength, digest))) {
        throw new ProtocolException(what + ": message authentication failed (altered, replayed or forged)");
      }
    }

    /**
     * Reads a whole message of {@code type} whose payload may be any length up to {@code maxPayload}
     * bytes, checks its tag, and returns its header and payload.
     */
    byte[][] readAny(DataInputStream in, int type, int headerLength, long maxPayload, String what) throws IOException {
      int t = in.readInt();
      if (t != type) {
        throw new ProtocolException("expected " + what + " (message type " + type + ") but got message type " + t);
      }
      int n = in.readInt();
      if (n < headerLength || n - headerLength > maxPayload) {
        throw new LengthException(what + " holds " + n + " bytes but " + headerLength + " to " + (headerLength + maxPayload) + " were expected", n);
      }
      byte[] header = new byte[headerLength];
      in.readFully(header);
      byte[] payload = new byte[n - headerLength];
      in.readFully(payload);
      verify(in, type, header, payload.length, Digest.of(payload, 0, payload.length), what);
      return new byte[][] {header, payload};
    }

    /** Reads a whole message without payload: its header. */
    byte[] read(DataInputStream in, int type, int headerLength, String what) throws IOException {
      byte[] header = readHead(in, type, headerLength, 0, what);
      verify(in, type, header, 0, Digest.EMPTY, what);
      return header;
    }
  }

  /** A peer broke the protocol: wrong credentials, step, size, or a message that fails its MAC. */
  static class ProtocolException extends IOException {
    ProtocolException(String m) {
      super(m);
    }
  }

  /** A message of the right type but the wrong length. */
  static final class LengthException extends ProtocolException {
    private final int found;

    LengthException(String m, int found) {
      super(m);
      this.found = found;
    }

    int found() {
      return found;
    }
  }
}
