package io.lorafleet.driver.bench;

import io.lorafleet.driver.allreduce.GradientClient;
import io.lorafleet.driver.allreduce.GradientServer;
import io.lorafleet.driver.allreduce.PortRange;
import io.lorafleet.driver.allreduce.SumTree;
import io.lorafleet.driver.allreduce.Transport;
import io.lorafleet.driver.kernels.Kernels;
import io.lorafleet.driver.optim.AdamW;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;

/**
 * The driver's side of a step, measured ({@code lorafleet bench-comm}): the real gradient server
 * and the real optimizer against N simulated workers in a second JVM, each pushing P values a step
 * over real sockets on 127.0.0.1. The simulated workers reuse one encoded, digested push and skip
 * checking the broadcast, so that as little of this machine's CPU as possible goes to them; the
 * driver does all of its real work. The driver's CPU time is its own JVM's, so it is not muddied by
 * the workers sharing the machine.
 */
public final class CommBenchmark {
  /** One configuration's medians over the measured steps. */
  public record Row(int workers, long params, String transport, double stepMs, double broadcastMs, double exchangeMs, double reduceMs,
      double digestMs, double optimizerMs, double driverCpuMs, long bytes) {}

  private CommBenchmark() {}

  /**
   * Memory bandwidth as the optimizer uses it: a ← a + 3·b over 2 × 64M floats on every core,
   * vectorized, in place (read 8 bytes and write 4 a value, with no write-allocate traffic, as AdamW
   * reads and writes p, m and v in place). The best of 10, in GB/s.
   */
  public static double memoryBandwidth() {
    int n = 64 << 20;
    float[] a = new float[n];
    float[] b = new float[n];
    Arrays.fill(a, 1f);
    Arrays.fill(b, 2f);
    double best = 0;
    for (int rep = 0; rep < 10; rep++) {
      long t0 = System.nanoTime();
      Kernels.chunks(n, (from, to) -> Kernels.addScaled(a, b, 3f, from, to));
      best = Math.max(best, 12.0 * n / (System.nanoTime() - t0));
    }
    return best;
  }

  /** Reduce (one worker's gradient, already received) + clip + AdamW at P values, as the driver runs them after the last byte. */
  public static Map<String, Double> driverMath(int p, int reps) {
    Random rnd = new Random(1);
    float[] params = new float[p];
    float[] grad = new float[p];
    for (int i = 0; i < p; i++) {
      params[i] = (float) rnd.nextGaussian();
      grad[i] = (float) rnd.nextGaussian();
    }
    byte[] wire = new byte[4 * p];
    Transport.FP32.encode(grad, 0, p, wire, 0);
    float[] sum = new float[p];
    AdamW opt = new AdamW(p, 0.9, 0.999, 1e-8, 0.01, false);
    double best = Double.MAX_VALUE;
    double bestReduce = 0;
    double bestOpt = 0;
    for (int r = 0; r < reps; r++) {
      long t0 = System.nanoTime();
      double[] squares = new double[Kernels.tasks(p)];
      Kernels.chunks(p, (from, to) -> { // decode into the sum and square it, chunk by chunk
        Transport.FP32.decode(wire, 4 * from, to - from, sum, from);
        squares[from / Kernels.TASK] = Kernels.sumSquares(sum, from, to);
      });
      long t1 = System.nanoTime();
      double norm = Math.sqrt(Arrays.stream(squares).sum()) / 1000;
      opt.step(params, sum, 1f / 1000, AdamW.clipCoefficient(norm, 1.0), 1e-4);
      long t2 = System.nanoTime();
      if (t2 - t0 < best) {
        best = t2 - t0;
        bestReduce = t1 - t0;
        bestOpt = t2 - t1;
      }
    }
    Map<String, Double> m = new LinkedHashMap<>();
    m.put("params", (double) p);
    m.put("reduce_ms", bestReduce / 1e6);
    m.put("clip_adamw_ms", bestOpt / 1e6);
    m.put("total_ms", best / 1e6);
    // bytes the pass must move: wire read and sum written (8), then AdamW reads sum, p, m, v and writes p, m, v (28)
    m.put("bytes_per_param", 36.0);
    m.put("achieved_gb_s", 36.0 * p / best);
    return m;
  }

  /** Runs {@code steps} measured steps (after one warm-up) of N simulated workers pushing P values. */
  public static Row run(int workers, int p, Transport t, int steps) throws Exception {
    byte[] secret = new byte[32];
    new SecureRandom().nextBytes(secret);
    String job = UUID.randomUUID().toString();
    try (GradientServer server = new GradientServer("127.0.0.1", PortRange.ANY, job, secret, workers, 600_000, i -> "value " + i, t)) {
      Process sim = simulate(server.port(), job, secret, workers, p, t);
      try {
        CompletableFuture<Void> accept = CompletableFuture.runAsync(() -> {
          try {
            server.awaitWorkers(() -> !sim.isAlive());
          } catch (IOException e) {
            throw new RuntimeException(e);
          }
        });
        accept.get();
        float[] params = new float[p];
        AdamW opt = new AdamW(p, 0.9, 0.999, 1e-8, 0.0, false);
        var os = (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
        List<double[]> rows = new ArrayList<>();
        for (int s = 0; s <= steps; s++) {
          long bytes0 = server.bytesSent() + server.bytesReceived();
          long cpu0 = os.getProcessCpuTime();
          long t0 = System.nanoTime();
          GradientServer.Gathered g = server.exchange(s, params);
          long t1 = System.nanoTime();
          double mean = 1.0 / Math.max(1, g.tokens());
          opt.step(params, g.sum(), (float) mean, AdamW.clipCoefficient(Math.sqrt(g.sumSquares()) * mean, 1.0), 1e-4);
          long t2 = System.nanoTime();
          long cpu = os.getProcessCpuTime() - cpu0;
          if (s > 0) {
            rows.add(new double[] {(t2 - t0) / 1e6, g.broadcastNanos() / 1e6, (t1 - t0) / 1e6, g.reduceNanos() / 1e6, g.digestNanos() / 1e6,
                (t2 - t1) / 1e6, cpu / 1e6, server.bytesSent() + server.bytesReceived() - bytes0});
          }
        }
        server.finish();
        double[] med = new double[8];
        for (int k = 0; k < med.length; k++) {
          final int col = k;
          double[] v = rows.stream().mapToDouble(r -> r[col]).sorted().toArray();
          med[k] = v[v.length / 2];
        }
        return new Row(workers, p, t.flag(), med[0], med[1], med[2], med[3], med[4], med[5], med[6], (long) med[7]);
      } finally {
        if (!sim.waitFor(60, java.util.concurrent.TimeUnit.SECONDS)) {
          sim.destroyForcibly();
        }
      }
    }
  }

  private static Process simulate(int port, String job, byte[] secret, int workers, int p, Transport t) throws IOException {
    List<String> cmd = new ArrayList<>();
    cmd.add(ProcessHandle.current().info().command().orElse("java"));
    cmd.add("--add-modules=jdk.incubator.vector");
    cmd.add("-Xmx" + Math.max(512, 64 + 3L * 4 * p / (1 << 20)) + "m");
    cmd.add("-cp");
    cmd.add(System.getProperty("java.class.path"));
    cmd.add(CommBenchmark.class.getName());
    Process proc = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.INHERIT).start();
    proc.getOutputStream().write((port + " " + job + " " + HexFormat.of().formatHex(secret) + " " + workers + " " + p + " " + t.flag() + "\n")
        .getBytes(StandardCharsets.UTF_8));
    proc.getOutputStream().close();
    return proc;
  }

  /** The simulated workers' JVM: reads "port job secret workers params transport" from stdin. */
  public static void main(String[] args) throws Exception {
    String[] a = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8)).readLine().trim().split(" ");
    int port = Integer.parseInt(a[0]);
    byte[] secret = HexFormat.of().parseHex(a[2]);
    int workers = Integer.parseInt(a[3]);
    int p = Integer.parseInt(a[4]);
    Transport t = Transport.parse(a[5]);
    float[] g = new float[p];
    Random rnd = new Random(7);
    for (int i = 0; i < p; i++) {
      g[i] = (float) rnd.nextGaussian();
    }
    byte[] payload = new byte[(int) t.bytes(p)];
    t.encode(g, 0, p, payload, 0);
    byte[] digest = GradientClient.digest(payload);
    List<Thread> threads = new ArrayList<>();
    for (int r = 0; r < workers; r++) {
      final int rank = r;
      Thread th = new Thread(() -> {
        try (GradientClient c = GradientClient.connect("127.0.0.1", port, a[1], secret, new SumTree.Node(rank, rank + 1), p, 600_000, t)) {
          byte[] scratch = new byte[1 << 20];
          for (int step = 0; c.skipNext(scratch); step++) {
            c.pushEncoded(step, 1, payload, digest);
          }
        } catch (IOException e) {
          throw new RuntimeException("simulated rank " + rank + ": " + e, e);
        }
      });
      th.start();
      threads.add(th);
    }
    for (Thread th : threads) {
      th.join();
    }
  }
}
