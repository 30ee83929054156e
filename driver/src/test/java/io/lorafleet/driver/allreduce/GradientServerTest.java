package io.lorafleet.driver.allreduce;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.util.concurrent.CompletableFuture;
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

  @Test
  void exchangesAndRefusesStrangersAndBadPushes() throws Exception {
    try (GradientServer s = new GradientServer("127.0.0.1", "job-1", SECRET, 1, 5_000)) {
      CompletableFuture<Void> accept = acceptAsync(s);
      IOException wrongSecret = assertThrows(IOException.class, () -> GradientClient.connect("127.0.0.1", s.port(), "job-1", new byte[32], 0, 3, 5_000));
      assertTrue(wrongSecret.getMessage().contains("authentication failed"), wrongSecret.getMessage());
      IOException wrongJob = assertThrows(IOException.class, () -> GradientClient.connect("127.0.0.1", s.port(), "job-2", SECRET, 0, 3, 5_000));
      assertTrue(wrongJob.getMessage().contains("job id 'job-2'"), wrongJob.getMessage());
      try (GradientClient c = GradientClient.connect("127.0.0.1", s.port(), "job-1", SECRET, 0, 3, 5_000)) {
        accept.get();
        assertEquals(2, s.rejected().size());
        CompletableFuture<GradientServer.Push[]> ex = CompletableFuture.supplyAsync(() -> {
          try {
            return s.exchange(0, new float[] {1, 2, 3});
          } catch (IOException e) {
            throw new RuntimeException(e);
          }
        });
        var p = c.next().orElseThrow();
        assertArrayEquals(new float[] {1, 2, 3}, p.values());
        c.push(0, 5, 2.5, 1_000_000L, new float[] {0.5f, 0.25f, 0.125f});
        GradientServer.Push[] pushes = ex.get();
        assertArrayEquals(new float[] {0.5f, 0.25f, 0.125f}, pushes[0].gradSum());
        assertEquals(5, pushes[0].tokens());
        assertEquals(1_000_000L, pushes[0].computeNanos());
        // A push for the wrong step fails the step and is not applied.
        CompletableFuture<GradientServer.Push[]> bad = CompletableFuture.supplyAsync(() -> {
          try {
            return s.exchange(1, new float[] {1, 2, 3});
          } catch (IOException e) {
            throw new RuntimeException(e.getMessage(), e);
          }
        });
        c.next().orElseThrow();
        c.pushRaw("job-1", 7, 5, 1.0, 0L, new float[] {1, 1, 1});
        var err = assertThrows(java.util.concurrent.ExecutionException.class, bad::get);
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
        CompletableFuture<String> ex = CompletableFuture.supplyAsync(() -> {
          try {
            s.exchange(0, new float[] {1, 2});
            return "ok";
          } catch (IOException e) {
            return e.getMessage();
          }
        });
        c.next();
        c.pushRaw("job", 0, 1, 1.0, 0L, new float[] {1, 2, 3, 4});
        assertTrue(ex.get().contains("push holds 4 floats but the adapter has 2"), ex.get());
      }
    }
    try (GradientServer s = new GradientServer("127.0.0.1", "job", SECRET, 1, 1_000)) {
      acceptAsync(s);
      try (GradientClient c = GradientClient.connect("127.0.0.1", s.port(), "job", SECRET, 0, 2, 5_000)) {
        Thread.sleep(200);
        long t = System.nanoTime();
        IOException e = assertThrows(IOException.class, () -> s.exchange(0, new float[] {1, 2}));
        assertTrue(e.getMessage().contains("no answer within 1000 ms"), e.getMessage());
        assertTrue((System.nanoTime() - t) / 1e9 < 10);
      }
    }
  }
}
