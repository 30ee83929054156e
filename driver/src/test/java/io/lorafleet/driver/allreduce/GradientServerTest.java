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
import java.util.List;
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

  static CompletableFuture<GradientServer.Gathered> exchangeAsync(GradientServer s, int step, float[] params) {
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
    var b = java.nio.ByteBuffer.allocate(16 + clientNonce.length + mac.length);
    b.putInt(Wire.MAGIC).putInt(version).putInt(rank).putInt(rank + 1).put(clientNonce).put(mac);
    return b.array();
  }

  static SumTree.Node rank(int r) {
    return new SumTree.Node(r, r + 1);
  }

  @Test
  void theRunsOfAJobTakeTurnsWithAdaptersOfTheirOwnSizesAndAPushForAnotherRunIsRefused() throws Exception {
    try (GradientServer s = new GradientServer("127.0.0.1", PortRange.ANY, "job-m", SECRET, 1, 5_000, (run, i) -> "run " + run + " element " + i,
        Transport.FP32)) {
      CompletableFuture<Void> accept = acceptAsync(s);
      try (GradientClient c = GradientClient.connect("127.0.0.1", s.port(), "job-m", SECRET, rank(0), new int[] {3, 2}, 5_000, Transport.FP32)) {
        accept.get();
        for (int step = 0; step < 2; step++) {
          for (int run = 0; run < 2; run++) {
            final int r = run;
            final int st = step;
            float[] params = run == 0 ? new float[] {1, 2, 3} : new float[] {4, 5};
            CompletableFuture<GradientServer.Gathered> ex = CompletableFuture.supplyAsync(() -> {
              try {
                return s.exchange(r, st, params, 1.0);
              } catch (IOException e) {
                throw new RuntimeException(e.getMessage(), e);
              }
            });
            var p = c.next().orElseThrow();
            assertEquals(run, p.run());
            assertArrayEquals(params, p.values(), "run " + run + "'s adapter, of its own size");
            float[] grad = run == 0 ? new float[] {0.5f, 0.5f, 0.5f} : new float[] {2, 4};
            c.push(step, run, 1 + run, 1, 0, 0, -1, new double[] {run}, List.of(grad));
            GradientServer.Gathered g = ex.get();
            assertArrayEquals(grad, g.sum());
            assertEquals(1 + run, g.tokens());
          }
        }
        CompletableFuture<GradientServer.Gathered> wrong = CompletableFuture.supplyAsync(() -> {
          try {
            return s.exchange(1, 2, new float[] {4, 5}, 1.0);
          } catch (IOException e) {
            throw new RuntimeException(e.getMessage(), e);
          }
        });
        c.next().orElseThrow();
        c.push(2, 0, 1, 1, 0, 0, -1, new double[] {0}, List.of(new float[] {1, 1}));
        var err = assertThrows(ExecutionException.class, wrong::get);
        assertTrue(err.getCause().getMessage().contains("push for run 0 rejected, step 2 is run 1's"), err.getCause().getMessage());
      }
    }
  }

  @Test
  void exchangesAndRefusesStrangersTellingThemNothing() throws Exception {
    try (GradientServer s = new GradientServer("127.0.0.1", "job-1", SECRET, 1, 5_000)) {
      CompletableFuture<Void> accept = acceptAsync(s);
      IOException wrongSecret = assertThrows(IOException.class, () -> GradientClient.connect("127.0.0.1", s.port(), "job-1", new byte[32], 0, 3, 5_000));
      assertTrue(wrongSecret.getMessage().contains("refused slot 0"), wrongSecret.getMessage());
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
        CompletableFuture<GradientServer.Gathered> ex = exchangeAsync(s, 0, new float[] {1, 2, 3});
        var p = c.next().orElseThrow();
        assertArrayEquals(new float[] {1, 2, 3}, p.values());
        c.push(0, 5, 23, 2.5, 1_000_000L, 0, new float[] {0.5f, 0.25f, 0.125f});
        GradientServer.Gathered pushes = ex.get();
        assertArrayEquals(new float[] {0.5f, 0.25f, 0.125f}, pushes.sum());
        assertEquals(5, pushes.tokens());
        assertEquals(23, pushes.inputTokens(), "the input tokens travel beside the target tokens");
        assertEquals(1_000_000L, pushes.computeNanos());
        assertEquals(0.25 + 0.0625 + 0.015625, pushes.sumSquares(), 1e-12);
        // A push for the wrong step fails the step and is not applied.
        CompletableFuture<GradientServer.Gathered> bad = exchangeAsync(s, 1, new float[] {1, 2, 3});
        c.next().orElseThrow();
        c.push(7, 5, 5, 1.0, 0L, 0, new float[] {1, 1, 1});
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
        CompletableFuture<GradientServer.Gathered> ex = exchangeAsync(s, 0, new float[] {1, 2});
        c.next();
        c.push(0, 1, 1, 1.0, 0L, 0, new float[] {1, 2, 3, 4});
        var err = assertThrows(ExecutionException.class, ex::get);
        assertTrue(err.getCause().getMessage().contains("it holds 4 fp32 values a node but the adapter has 2"), err.getCause().getMessage());
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
    try (GradientServer s = new GradientServer("127.0.0.1", PortRange.ANY, "job", SECRET, 1, 5_000, i -> i < 2 ? "layer.lora_A.weight" : "layer.lora_B.weight", Transport.FP32)) {
      CompletableFuture<Void> accept = acceptAsync(s);
      try (GradientClient c = GradientClient.connect("127.0.0.1", s.port(), "job", SECRET, 0, 3, 5_000)) {
        accept.get();
        CompletableFuture<GradientServer.Gathered> nan = exchangeAsync(s, 0, new float[] {1, 2, 3});
        c.next();
        c.push(0, 4, 4, 1.0, 0L, 0, new float[] {0, 0, Float.NaN});
        var err = assertThrows(ExecutionException.class, nan::get);
        assertInstanceOf(io.lorafleet.worker.train.NonFiniteGradientException.class, err.getCause());
        assertTrue(err.getCause().getMessage().contains("non-finite gradient (NaN) for 'layer.lora_B.weight'"), err.getCause().getMessage());
        // An overflow flagged as such (fp16 under loss scaling) is not an error: the driver skips the step.
        CompletableFuture<GradientServer.Gathered> over = exchangeAsync(s, 1, new float[] {1, 2, 3});
        c.next();
        c.push(1, 4, 4, Double.POSITIVE_INFINITY, 0L, GradientServer.FLAG_OVERFLOW, new float[] {Float.POSITIVE_INFINITY, 0, 0});
        assertTrue(over.get().overflow());
        // A push signed with another key (altered or injected on the wire) fails its MAC.
        CompletableFuture<GradientServer.Gathered> forged = exchangeAsync(s, 2, new float[] {1, 2, 3});
        c.next();
        c.forgeSessionKey();
        c.push(2, 4, 4, 1.0, 0L, 0, new float[] {1, 1, 1});
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
      recorded = hello(Wire.VERSION, 0, cn, Wire.hmac(SECRET, "hello", "job", rank(0), n1, cn));
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
        old.getOutputStream().write(hello(1, 1, cn, Wire.hmac(SECRET, "hello", "job", rank(1), n, cn)));
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
        byte[] valid = hello(Wire.VERSION, 0, new byte[16], new byte[32]); // well-formed, 64 bytes: 6.4 s at this pace
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

  /**
   * Pushes of several chunks each (more than the ring holds), from peers speaking for the given slot
   * ranges, each pushing the sums of the tree nodes inside its range; returns the driver's sum.
   */
  static GradientServer.Gathered reduceOver(int workers, java.util.List<SumTree.Node> nodes, float[][] perRank, Transport t) throws Exception {
    int n = perRank[0].length;
    try (GradientServer s = new GradientServer("127.0.0.1", PortRange.ANY, "job", SECRET, workers, 30_000, i -> "t", t)) {
      CompletableFuture<Void> accept = acceptAsync(s);
      java.util.List<GradientClient> clients = new java.util.ArrayList<>();
      for (SumTree.Node x : nodes) {
        clients.add(GradientClient.connect("127.0.0.1", s.port(), "job", SECRET, x, n, 30_000, t));
      }
      accept.get();
      assertEquals(nodes.stream().mapToInt(x -> SumTree.cover(workers, x).size()).sum(), s.pushesPerStep());
      CompletableFuture<GradientServer.Gathered> ex = exchangeAsync(s, 0, new float[n]);
      java.util.List<CompletableFuture<Void>> pushes = new java.util.ArrayList<>();
      for (int k = 0; k < nodes.size(); k++) {
        GradientClient c = clients.get(k);
        SumTree.Node x = nodes.get(k);
        pushes.add(CompletableFuture.runAsync(() -> {
          try {
            c.next().orElseThrow();
            java.util.Map<SumTree.Node, float[]> leaves = new java.util.HashMap<>();
            for (int r = x.lo(); r < x.hi(); r++) {
              leaves.put(rank(r), perRank[r].clone());
            }
            java.util.List<SumTree.Node> cover = SumTree.cover(workers, x);
            java.util.List<float[]> sums = new java.util.ArrayList<>();
            double[] losses = new double[cover.size()];
            for (int j = 0; j < cover.size(); j++) {
              sums.add(SumTree.sum(cover.get(j), leaves, 0, n));
              losses[j] = cover.get(j).size();
            }
            c.push(0, 0, x.size(), x.size(), 0, 0, -1, losses, sums);
          } catch (IOException e) {
            throw new RuntimeException(e);
          }
        }));
      }
      GradientServer.Gathered g = ex.get();
      pushes.forEach(CompletableFuture::join);
      for (GradientClient c : clients) {
        c.close();
      }
      return new GradientServer.Gathered(g.sum().clone(), g.sumSquares(), g.tokens(), g.inputTokens(), g.lossSum(), g.computeNanos(), g.overflow(), g.scaled(),
          g.pushes(), 0, 0, 0);
    }
  }

  @Test
  void streamedPushesReduceToTheTreeSumWhateverTheGrouping() throws Exception {
    int n = 6 * StreamingReduce.CHUNK + 7; // more chunks than the ring's depth, and a partial one
    float[][] g = new float[4][n];
    java.util.Random rnd = new java.util.Random(2);
    for (float[] x : g) {
      for (int i = 0; i < n; i++) {
        x[i] = (float) (rnd.nextGaussian() * Math.pow(10, rnd.nextInt(7) - 3));
      }
    }
    java.util.Map<SumTree.Node, float[]> leaves = new java.util.HashMap<>();
    for (int r = 0; r < 4; r++) {
      leaves.put(rank(r), g[r].clone());
    }
    float[] expected = SumTree.sum(SumTree.root(4), leaves, 0, n);
    GradientServer.Gathered flat = reduceOver(4, java.util.List.of(rank(0), rank(1), rank(2), rank(3)), g, Transport.FP32);
    assertArrayEquals(expected, flat.sum(), 0f);
    assertEquals(4, flat.tokens());
    double squares = 0;
    for (float x : expected) {
      squares += (double) x * x;
    }
    assertEquals(squares, flat.sumSquares(), 1e-6 * squares);
    GradientServer.Gathered grouped = reduceOver(4, java.util.List.of(new SumTree.Node(0, 2), new SumTree.Node(2, 4)), g, Transport.FP32);
    assertArrayEquals(expected, grouped.sum(), 0f, "pre-reduced pairs give the flat path's bits");
    assertEquals(2, grouped.pushes());
    GradientServer.Gathered mixed = reduceOver(4, java.util.List.of(rank(0), rank(1), new SumTree.Node(2, 4)), g, Transport.FP32);
    assertArrayEquals(expected, mixed.sum(), 0f);
    // ranges that are not tree nodes: slots 1..3 push [1, 2) and [2, 4), interleaved chunk by chunk in one message
    GradientServer.Gathered uneven = reduceOver(4, java.util.List.of(rank(0), new SumTree.Node(1, 4)), g, Transport.FP32);
    assertArrayEquals(expected, uneven.sum(), 0f, "a range's node sums give the flat path's bits");
    assertEquals(3, uneven.pushes());
    assertEquals(4.0, uneven.lossSum(), "each node's loss sum travels in the header");
    GradientServer.Gathered thirds = reduceOver(4, java.util.List.of(rank(0), new SumTree.Node(1, 3), rank(3)), g, Transport.FP32);
    assertArrayEquals(expected, thirds.sum(), 0f);
    // bf16 and block-scaled fp16 on the wire: each pushed node sum within 2^-8 (2^-11) of itself, accumulated in fp32
    for (Transport t : new Transport[] {Transport.BF16, Transport.FP16}) {
      for (java.util.List<SumTree.Node> peers : java.util.List.of(java.util.List.of(rank(0), rank(1), rank(2), rank(3)),
          java.util.List.of(rank(0), new SumTree.Node(1, 4)))) {
        GradientServer.Gathered got = reduceOver(4, peers, g, t);
        double err = 0;
        for (int i = 0; i < n; i++) {
          double bound = 0;
          for (float[] x : g) {
            bound += Math.abs(x[i]) * (t == Transport.BF16 ? 0x1p-8 : 0x1p-11);
          }
          err = Math.max(err, Math.abs(got.sum()[i] - expected[i]) - bound - 4 * Math.ulp(expected[i]) - (t == Transport.FP16 ? 1e-9 : 0));
        }
        assertTrue(err <= 0, t + " over " + peers + ": the sum exceeds its bound by " + err);
      }
    }
  }

  @Test
  void aRangeOutsideTheSlotsOrOverlappingAnotherIsRefused() throws Exception {
    try (GradientServer s = new GradientServer("127.0.0.1", "job", SECRET, 6, 5_000)) {
      IOException outside = assertThrows(IOException.class,
          () -> GradientClient.connect("127.0.0.1", s.port(), "job", SECRET, new SumTree.Node(5, 7), 2, 5_000, Transport.FP32));
      assertTrue(outside.getMessage().contains("refused slots 5..6"), outside.getMessage());
      try (GradientClient three = GradientClient.connect("127.0.0.1", s.port(), "job", SECRET, new SumTree.Node(3, 6), 2, 5_000, Transport.FP32)) {
        assertThrows(IOException.class, () -> GradientClient.connect("127.0.0.1", s.port(), "job", SECRET, rank(5), 2, 5_000, Transport.FP32));
      }
      assertTrue(s.rejected().get(0).contains("slots 5..6 lies outside the 6 slots of a step"), s.rejected().toString());
      assertTrue(s.rejected().get(1).contains("slot 5 is already connected"), s.rejected().toString());
    }
  }

  @Test
  void aPortRangeIsHonoured() throws Exception {
    int lo;
    try (ServerSocket probe = new ServerSocket(0)) {
      lo = probe.getLocalPort();
    }
    PortRange range = new PortRange(lo, lo);
    try (GradientServer a = new GradientServer("127.0.0.1", range, "job", SECRET, 1, 1_000, i -> "", Transport.FP32)) {
      assertEquals(lo, a.port());
      var e = assertThrows(java.net.BindException.class, () -> new GradientServer("127.0.0.1", range, "job", SECRET, 1, 1_000, i -> "", Transport.FP32));
      assertTrue(e.getMessage().contains("no free port in --gradient-ports " + lo + "-" + lo), e.getMessage());
    }
    assertEquals(new PortRange(40000, 40100), PortRange.parse("40000-40100"));
    var bad = assertThrows(IllegalArgumentException.class, () -> PortRange.parse("40100-40000"));
    assertTrue(bad.getMessage().contains("40100-40000"), bad.getMessage());
    assertThrows(IllegalArgumentException.class, () -> PortRange.parse("x"));
  }
}
