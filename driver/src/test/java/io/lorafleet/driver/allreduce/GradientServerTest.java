package io.lorafleet.driver.allreduce;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import org.junit.jupiter.api.Test;

class GradientServerTest {
  static final byte[] SECRET = "s3cret-s3cret-s3cret-s3cret-0123".getBytes();

  /** Accepts the server's workers on another thread, as the driver does while the stage starts. */
  static CompletableFuture<Void> acceptAsync(GradientServer s) {
    return CompletableFuture.runAsync(() -> {
      try {
        s.awaitWorkers();
      } catch (IOException e) {
        throw new RuntimeException(e);
      }
    });
  }

  static CompletableFuture<GradientServer.Push[]> exchangeAsync(GradientServer s, int step, float[] params) {
    return CompletableFuture.supplyAsync(() -> {
      try {
        return s.exchange(step, params);
      } catch (IOException e) {
        throw new RuntimeException(e.getMessage(), e);
      }
    });
  }

  /** A raw peer: reads the server's hello and returns its nonce. */
  static byte[] serverNonce(DataInputStream in) throws IOException {
    assertEquals(Wire.MAGIC, in.readInt());
    assertEquals(Wire.VERSION, in.readInt());
    byte[] n = new byte[Wire.NONCE_BYTES];
    in.readFully(n);
    return n;
  }

  static byte[] hello(int version, int rank, byte[] clientNonce, byte[] mac) {
    var b = java.nio.ByteBuffer.allocate(12 + clientNonce.length + mac.length);
    b.putInt(Wire.MAGIC).putInt(version).putInt(rank).put(clientNonce).put(mac);
    return b.array();
  }

  @Test
  void exchangesAndRefusesStrangersTellingThemNothing() throws Exception {
    try (GradientServer s = new GradientServer("127.0.0.1", "job-1", SECRET, 1, 5_000)) {
      CompletableFuture<Void> accept = acceptAsync(s);
      IOException wrongSecret = assertThrows(IOException.class, () -> GradientClient.connect("127.0.0.1", s.port(), "job-1", new byte[32], 0, 3, 5_000));
      assertTrue(wrongSecret.getMessage().contains("refused rank 0"), wrongSecret.getMessage());
      IOException wrongJob = assertThrows(IOException.class, () -> GradientClient.connect("127.0.0.1", s.port(), "job-2", SECRET, 0, 3, 5_000));
      assertFalse(wrongJob.getMessage().contains("job-1"), "a refused peer learns nothing about the job: " + wrongJob.getMessage());
      // what a stranger receives: the server's hello, then REJECT, then the end of the stream
      try (Socket raw = new Socket("127.0.0.1", s.port())) {
        DataInputStream in = new DataInputStream(raw.getInputStream());
        serverNonce(in);
        raw.getOutputStream().write(hello(Wire.VERSION, 0, new byte[16], new byte[32]));
        assertEquals(Wire.REJECT, in.readInt());
        assertEquals(-1, in.read());
      }
      try (GradientClient c = GradientClient.connect("127.0.0.1", s.port(), "job-1", SECRET, 0, 3, 5_000)) {
        accept.get();
        assertEquals(3, s.rejected().size(), s.rejected().toString());
        assertTrue(s.rejected().get(0).contains("authentication failed"), s.rejected().toString());
        CompletableFuture<GradientServer.Push[]> ex = exchangeAsync(s, 0, new float[] {1, 2, 3});
        var p = c.next().orElseThrow();
        assertArrayEquals(new float[] {1, 2, 3}, p.values());
        c.push(0, 5, 2.5, 1_000_000L, 0, new float[] {0.5f, 0.25f, 0.125f});
        GradientServer.Push[] pushes = ex.get();
        assertArrayEquals(new float[] {0.5f, 0.25f, 0.125f}, pushes[0].gradSum());
        assertEquals(5, pushes[0].tokens());
        assertEquals(1_000_000L, pushes[0].computeNanos());
        // A push for the wrong step fails the step and is not applied.
        CompletableFuture<GradientServer.Push[]> bad = exchangeAsync(s, 1, new float[] {1, 2, 3});
        c.next().orElseThrow();
        c.push(7, 5, 1.0, 0L, 0, new float[] {1, 1, 1});
        var err = assertThrows(ExecutionException.class, bad::get);
        assertTrue(err.getCause().getMessage().contains("push for step 7 rejected, the current step is 1"), err.getCause().getMessage());
      }
    }
  }

  @Test
  void wrongSizeAndSilentWorkersFailTheStep() throws Exception {
    try (GradientServer s = new GradientServer("127.0.0.1", "job", SECRET, 1, 1_500)) {
      CompletableFuture<Void> accept = acceptAsync(s);
      try (GradientClient c = GradientClient.connect("127.0.0.1", s.port(), "job", SECRET, 0, 2, 5_000)) {
        accept.get();
        CompletableFuture<GradientServer.Push[]> ex = exchangeAsync(s, 0, new float[] {1, 2});
        c.next();
        c.push(0, 1, 1.0, 0L, 0, new float[] {1, 2, 3, 4});
        var err = assertThrows(ExecutionException.class, ex::get);
        assertTrue(err.getCause().getMessage().contains("it holds 4 floats but the adapter has 2"), err.getCause().getMessage());
      }
    }
    try (GradientServer s = new GradientServer("127.0.0.1", "job", SECRET, 1, 1_000)) {
      CompletableFuture<Void> accept = acceptAsync(s);
      try (GradientClient c = GradientClient.connect("127.0.0.1", s.port(), "job", SECRET, 0, 2, 5_000)) {
        accept.get();
        IOException e = assertThrows(IOException.class, () -> s.exchange(0, new float[] {1, 2}));
        assertTrue(e.getMessage().contains("no answer within 1000 ms"), e.getMessage());
      }
    }
  }

  @Test
  void everyMessageIsAuthenticatedAndNonFinitePushesAreRefusedByTensor() throws Exception {
    try (GradientServer s = new GradientServer("127.0.0.1", PortRange.ANY, "job", SECRET, 1, 5_000, i -> i < 2 ? "layer.lora_A.weight" : "layer.lora_B.weight")) {
      CompletableFuture<Void> accept = acceptAsync(s);
      try (GradientClient c = GradientClient.connect("127.0.0.1", s.port(), "job", SECRET, 0, 3, 5_000)) {
        accept.get();
        CompletableFuture<GradientServer.Push[]> nan = exchangeAsync(s, 0, new float[] {1, 2, 3});
        c.next();
        c.push(0, 4, 1.0, 0L, 0, new float[] {0, 0, Float.NaN});
        var err = assertThrows(ExecutionException.class, nan::get);
        assertInstanceOf(GradientServer.NonFiniteGradientException.class, err.getCause().getCause());
        assertTrue(err.getCause().getMessage().contains("non-finite gradient (NaN) for 'layer.lora_B.weight'"), err.getCause().getMessage());
        // An overflow flagged as such (fp16 under loss scaling) is not an error: the driver skips the step.
        CompletableFuture<GradientServer.Push[]> over = exchangeAsync(s, 1, new float[] {1, 2, 3});
        c.next();
        c.push(1, 4, Double.POSITIVE_INFINITY, 0L, GradientServer.FLAG_OVERFLOW, new float[] {Float.POSITIVE_INFINITY, 0, 0});
        assertTrue(over.get()[0].overflow());
        // A push signed with another key (altered or injected on the wire) fails its MAC.
        CompletableFuture<GradientServer.Push[]> forged = exchangeAsync(s, 2, new float[] {1, 2, 3});
        c.next();
        c.forgeSessionKey();
        c.push(2, 4, 1.0, 0L, 0, new float[] {1, 1, 1});
        err = assertThrows(ExecutionException.class, forged::get);
        assertTrue(err.getCause().getMessage().contains("message authentication failed"), err.getCause().getMessage());
      }
    }
  }

  @Test
  void aSlowOrReplayingPeerNeverDelaysTheWorkers() throws Exception {
    try (GradientServer s = new GradientServer("127.0.0.1", "job", SECRET, 2, 30_000)) {
      CompletableFuture<Void> accept = acceptAsync(s);
      // a peer that connects first and trickles one byte: it holds its own handshake only
      Socket slow = new Socket("127.0.0.1", s.port());
      DataInputStream slowIn = new DataInputStream(slow.getInputStream());
      serverNonce(slowIn);
      slow.getOutputStream().write(0x4c);
      // a valid handshake for rank 0, recorded, then replayed verbatim on a new connection
      byte[] recorded;
      Socket first = new Socket("127.0.0.1", s.port());
      DataInputStream firstIn = new DataInputStream(first.getInputStream());
      byte[] n1 = serverNonce(firstIn);
      byte[] cn = new byte[16];
      recorded = hello(Wire.VERSION, 0, cn, Wire.hmac(SECRET, "hello", "job", 0, n1, cn));
      first.getOutputStream().write(recorded);
      assertEquals(Wire.ACCEPT, firstIn.readInt());
      try (Socket replay = new Socket("127.0.0.1", s.port())) {
        DataInputStream in = new DataInputStream(replay.getInputStream());
        serverNonce(in);
        replay.getOutputStream().write(recorded);
        assertEquals(Wire.REJECT, in.readInt());
      }
      // an old worker: refused by version
      try (Socket old = new Socket("127.0.0.1", s.port())) {
        DataInputStream in = new DataInputStream(old.getInputStream());
        byte[] n = serverNonce(in);
        old.getOutputStream().write(hello(1, 1, cn, Wire.hmac(SECRET, "hello", "job", 1, n, cn)));
        assertEquals(Wire.REJECT, in.readInt());
      }
      try (GradientClient c = GradientClient.connect("127.0.0.1", s.port(), "job", SECRET, 1, 2, 30_000)) {
        accept.get();
        // every rank is in while the slow peer is still inside its 30 s handshake: nothing was sent to it yet
        assertEquals(0, slowIn.available());
        assertTrue(s.rejected().stream().anyMatch(r -> r.contains("authentication failed")), s.rejected().toString());
        assertTrue(s.rejected().stream().anyMatch(r -> r.contains("protocol version 1")), s.rejected().toString());
      }
      first.close();
      slow.close();
    }
  }

  @Test
  void aTricklingPeerIsCutOffAtTheHandshakeDeadline() throws Exception {
    try (GradientServer s = new GradientServer("127.0.0.1", "job", SECRET, 1, 500)) {
      try (Socket slow = new Socket("127.0.0.1", s.port())) {
        DataInputStream in = new DataInputStream(slow.getInputStream());
        serverNonce(in);
        DataOutputStream out = new DataOutputStream(slow.getOutputStream());
        // one byte every 100 ms restarts no timer: the deadline covers the handshake as a whole
        byte[] valid = hello(Wire.VERSION, 0, new byte[16], new byte[32]); // well-formed, 60 bytes: 6 s at this pace
        IOException cut = assertThrows(IOException.class, () -> {
          for (int i = 0; i < valid.length; i++) {
            out.write(valid[i]);
            out.flush();
            Thread.sleep(100);
            if (in.available() > 0 && in.readInt() == Wire.REJECT) {
              in.readFully(new byte[1]); // the stream then ends
            }
          }
          in.readFully(new byte[1]); // reached only if the server waited for all of it
        });
        assertTrue(cut instanceof EOFException || cut instanceof java.net.SocketException, cut.toString());
      }
      assertTrue(s.rejected().get(0).contains("no complete handshake within 500 ms"), s.rejected().toString());
    }
  }

  @Test
  void aPortRangeIsHonoured() throws Exception {
    int lo;
    try (ServerSocket probe = new ServerSocket(0)) {
      lo = probe.getLocalPort();
    }
    PortRange range = new PortRange(lo, lo);
    try (GradientServer a = new GradientServer("127.0.0.1", range, "job", SECRET, 1, 1_000, i -> "")) {
      assertEquals(lo, a.port());
      var e = assertThrows(java.net.BindException.class, () -> new GradientServer("127.0.0.1", range, "job", SECRET, 1, 1_000, i -> ""));
      assertTrue(e.getMessage().contains("no free port in --gradient-ports " + lo + "-" + lo), e.getMessage());
    }
    assertEquals(new PortRange(40000, 40100), PortRange.parse("40000-40100"));
    var bad = assertThrows(IllegalArgumentException.class, () -> PortRange.parse("40100-40000"));
    assertTrue(bad.getMessage().contains("40100-40000"), bad.getMessage());
    assertThrows(IllegalArgumentException.class, () -> PortRange.parse("x"));
  }
}
