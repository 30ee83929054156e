package io.lorafleet.driver.bench;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.driver.serve.ApiServer;
import io.lorafleet.driver.serve.Scheduler;
import io.lorafleet.driver.serve.ServeOptions;
import io.lorafleet.worker.bench.StepBenchmark;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.ModelSkeleton;
import io.lorafleet.worker.model.TinyModelSpec;
import io.lorafleet.worker.tokenizer.Tokenizer;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.Stream;

/**
 * Serve latency over real HTTP: a server over a random base of the given shape with N random
 * adapters, driven by C closed-loop clients (each sends its next streamed request when the last
 * one ends), requests cycling through the adapters and the base. It reports end-to-end latency and
 * time to first token (p50, p99), output tokens per second, and the batches the scheduler ran; then
 * the same load with one row per batch, which is what continuous batching is measured against.
 */
public final class ServeBenchmark {
  private static final ObjectMapper JSON = new ObjectMapper();

  /** The load and the model's shape. */
  public record Settings(int hidden, int layers, int intermediate, int vocab, int adapters, int rank, int concurrency, int requests, int promptTokens,
      int maxTokens, int maxBatch, long seed) {}

  private ServeBenchmark() {}

  /** The benchmark's random base (its context: the prompt, max_tokens and 8 more) and adapters, written under {@code work}. */
  private record Fixture(Path model, Map<String, Path> adapters, List<String> words) {
    static Fixture write(Settings s, Path work) throws Exception {
      Path model = work.resolve("model");
      List<String> words = new ArrayList<>();
      for (int i = 0; words.size() < s.vocab() - 4; i++) {
        words.add("w" + i);
      }
      int heads = Math.max(1, s.hidden() / 64);
      ModelDirectory.initModel(model, new TinyModelSpec("llama", s.layers(), s.hidden(), heads, heads, s.intermediate(), 1,
          s.promptTokens() + s.maxTokens() + 8, false), words, s.seed());
      Map<String, Path> adapters = new LinkedHashMap<>();
      for (int a = 0; a < s.adapters(); a++) {
        LoraModel lora = LoraModel.create(ModelSkeleton.read(model), LoraConfig.of(s.rank(), 2 * s.rank(), List.of("all-linear")));
        float[] v = lora.initialParams(a);
        Random r = new Random(a);
        for (int k = 0; k < v.length; k++) {
          v[k] += (float) (r.nextGaussian() * 0.02);
        }
        Path dir = work.resolve("adapter-" + a);
        AdapterFormat.write(dir, lora, v, Map.of());
        adapters.put("a" + a, dir);
      }
      return new Fixture(model, adapters, words);
    }

    /** What requests name in turn: every adapter, then the base. */
    List<String> models() {
      List<String> names = new ArrayList<>(adapters.keySet());
      names.add("base");
      return names;
    }

    /** A prompt of {@code n} random words. */
    String prompt(Random r, int n) {
      StringBuilder p = new StringBuilder();
      for (int t = 0; t < n; t++) {
        p.append(t == 0 ? "" : " ").append(words.get(r.nextInt(words.size())));
      }
      return p.toString();
    }
  }

  public static Map<String, Object> run(Settings s, Path work) throws Exception {
    Fixture f = Fixture.write(s, work);
    Map<String, Object> out = new LinkedHashMap<>();
    out.put("settings", s);
    try (LanguageModel base = LanguageModel.load(f.model(), Device.cpu(), DataType.FLOAT32); Tokenizer tok = Tokenizer.load(f.model())) {
      Map<String, Object> batched = load(s, s.maxBatch(), base, tok, f);
      Map<String, Object> serial = load(s, 1, base, tok, f);
      out.put("continuous_batching", batched);
      out.put("one_row_per_batch", serial);
      out.put("throughput_ratio", round((double) batched.get("output_tokens_per_s") / (double) serial.get("output_tokens_per_s")));
    }
    return out;
  }

  private static Map<String, Object> load(Settings s, int maxBatch, LanguageModel base, Tokenizer tok, Fixture f) throws Exception {
    ServeOptions o = ServeOptions.builder("base").port(0).maxBatch(maxBatch).maxQueue(Math.max(16, 2 * s.concurrency())).requestTimeout(
        Duration.ofHours(1)).build();
    ApiServer server = ApiServer.start(o, base, tok, f.model(), f.adapters(), Clock.systemUTC());
    HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
    List<String> names = f.models();
    ExecutorService clients = Executors.newFixedThreadPool(s.concurrency());
    try {
      Random r = new Random(s.seed());
      List<String> bodies = new ArrayList<>();
      for (int i = 0; i < s.requests() + s.concurrency(); i++) {
        ObjectNode b = JSON.createObjectNode().put("model", names.get(i % names.size())).put("prompt", f.prompt(r, s.promptTokens()))
            .put("max_tokens", s.maxTokens()).put("temperature", 0).put("stream", true);
        b.putObject("stream_options").put("include_usage", true);
        bodies.add(b.toString());
      }
      // One request per client first, to warm up: not measured.
      runAll(clients, http, server.port(), bodies.subList(0, s.concurrency()), s.concurrency());
      Scheduler.Stats before = server.scheduler().stats();
      long t0 = System.nanoTime();
      List<double[]> per = runAll(clients, http, server.port(), bodies.subList(s.concurrency(), bodies.size()), s.concurrency());
      double wall = (System.nanoTime() - t0) / 1e9;
      Scheduler.Stats after = server.scheduler().stats();
      double[] latency = per.stream().mapToDouble(x -> x[0]).sorted().toArray();
      double[] ttft = per.stream().mapToDouble(x -> x[1]).sorted().toArray();
      long tokens = per.stream().mapToLong(x -> (long) x[2]).sum();
      Map<String, Object> m = new LinkedHashMap<>();
      m.put("max_batch", maxBatch);
      m.put("requests", per.size());
      m.put("latency_ms_p50", round(pct(latency, 50)));
      m.put("latency_ms_p99", round(pct(latency, 99)));
      m.put("ttft_ms_p50", round(pct(ttft, 50)));
      m.put("ttft_ms_p99", round(pct(ttft, 99)));
      m.put("output_tokens", tokens);
      m.put("output_tokens_per_s", round(tokens / wall));
      m.put("requests_per_s", round(per.size() / wall));
      long steps = after.steps() - before.steps();
      m.put("decode_steps", steps);
      m.put("mean_rows_per_step", steps == 0 ? 0 : round((double) (after.rows() - before.rows()) / steps));
      m.put("steps_with_mixed_adapters", after.mixedSteps() - before.mixedSteps());
      return m;
    } finally {
      clients.shutdownNow();
      server.close();
    }
  }

  /**
   * serve under a flood: {@code concurrency} clients connect at once, each asking (not streamed,
   * on a kept-alive connection of its own) for max_tokens at the cap: all the context its prompt leaves. A
   * client answered 429 waits the Retry-After it was given and asks again, until it is served.
   * Reports every answer by status (a connection that got no HTTP answer apart), the served
   * requests' latency from their first attempt (waiting included), the process's resident memory
   * after loading and at its peak (server and clients share this JVM), and the KV cache the
   * scheduler held against its budget. The server runs with serve's defaults besides --max-batch.
   */
  public static Map<String, Object> flood(Settings s, Path work) throws Exception {
    Fixture f = Fixture.write(s, work);
    Map<String, Object> out = new LinkedHashMap<>();
    out.put("settings", s);
    try (LanguageModel base = LanguageModel.load(f.model(), Device.cpu(), DataType.FLOAT32); Tokenizer tok = Tokenizer.load(f.model())) {
      int context = base.config().maxPositions();
      ServeOptions o = ServeOptions.builder("base").port(0).maxBatch(s.maxBatch()).requestTimeout(Duration.ofHours(1)).build();
      ApiServer server = ApiServer.start(o, base, tok, f.model(), f.adapters(), Clock.systemUTC());
      List<String> names = f.models();
      Random r = new Random(s.seed());
      List<byte[]> requests = new ArrayList<>();
      for (int i = 0; i <= s.concurrency(); i++) {
        String prompt = f.prompt(r, s.promptTokens());
        ObjectNode b = JSON.createObjectNode().put("model", names.get(i % names.size())).put("prompt", prompt)
            .put("max_tokens", context - tok.encodePrompt(prompt).length).put("temperature", 0);
        requests.add(rawPost(b.toString()));
      }
      ExecutorService clients = Executors.newFixedThreadPool(s.concurrency());
      try {
        untilServed(server.port(), requests.get(s.concurrency())); // warm-up, not measured
        long rssAfterLoad = StepBenchmark.rssKb();
        Scheduler.Stats before = server.scheduler().stats();
        long t0 = System.nanoTime();
        List<Future<List<double[]>>> fs = new ArrayList<>();
        for (int c = 0; c < s.concurrency(); c++) {
          byte[] req = requests.get(c);
          fs.add(clients.submit(() -> untilServed(server.port(), req)));
        }
        List<double[]> answers = new ArrayList<>(); // {status (0: no HTTP answer), ms of this attempt, ms since the first attempt}
        for (Future<List<double[]>> fut : fs) {
          answers.addAll(fut.get());
        }
        double wall = (System.nanoTime() - t0) / 1e9;
        Scheduler.Stats after = server.scheduler().stats();
        Map<String, Long> byStatus = new java.util.TreeMap<>();
        answers.forEach(a -> byStatus.merge(a[0] == 0 ? "no_http_answer" : String.valueOf((int) a[0]), 1L, Long::sum));
        double[] served = answers.stream().filter(a -> a[0] == 200).mapToDouble(a -> a[2]).sorted().toArray();
        double[] refused = answers.stream().filter(a -> a[0] == 429).mapToDouble(a -> a[1]).sorted().toArray();
        out.put("clients", s.concurrency());
        out.put("context", context);
        out.put("answers_by_status", byStatus);
        out.put("served_latency_ms_p50", round(pct(served, 50)));
        out.put("served_latency_ms_p99", round(pct(served, 99)));
        out.put("refusal_latency_ms_p99", refused.length == 0 ? 0 : round(pct(refused, 99)));
        out.put("wall_s", round(wall));
        out.put("generated_tokens", after.tokens() - before.tokens());
        out.put("rss_after_load_mb", rssAfterLoad / 1024);
        out.put("peak_rss_mb", StepBenchmark.peakRssKb() / 1024);
        long budget = server.scheduler().kvTokens();
        out.put("kv_budget_tokens", budget);
        out.put("peak_kv_cache_tokens", after.peakCacheTokens());
        var c = base.config();
        long bytesPerPosition = 2L * c.layers() * c.kvHeads() * (c.hidden() / c.heads()) * Float.BYTES; // K and V, fp32
        out.put("kv_cache_bound_mb", round(Math.min(budget, (long) s.maxBatch() * context) * bytesPerPosition / 1048576.0));
      } finally {
        clients.shutdownNow();
        server.close();
      }
    }
    return out;
  }

  private static byte[] rawPost(String body) {
    byte[] b = body.getBytes(java.nio.charset.StandardCharsets.UTF_8);
    java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
    out.writeBytes(("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " + b.length
        + "\r\n\r\n").getBytes(java.nio.charset.StandardCharsets.US_ASCII));
    out.writeBytes(b);
    return out.toByteArray();
  }

  /**
   * One client of the flood, on one kept-alive connection (opened again if the server closes it):
   * attempts until a 200 (at most 10,000), waiting each 429's Retry-After; {status, attempt ms, ms
   * since the first} per answer.
   */
  private static List<double[]> untilServed(int port, byte[] req) throws InterruptedException {
    List<double[]> mine = new ArrayList<>();
    long first = System.nanoTime();
    java.net.Socket sock = null;
    try {
      for (int a = 0; a < 10_000; a++) {
        long t = System.nanoTime();
        int[] answer;
        try {
          if (sock == null) {
            sock = new java.net.Socket("127.0.0.1", port);
            sock.setSoTimeout(3_600_000);
          }
          answer = exchange(sock, req);
        } catch (java.io.IOException e) {
          answer = new int[] {0, 1, 1};
        }
        if (answer[2] == 1 && sock != null) {
          closeQuietly(sock);
          sock = null;
        }
        long now = System.nanoTime();
        mine.add(new double[] {answer[0], (now - t) / 1e6, (now - first) / 1e6});
        if (answer[0] == 200 || answer[0] != 429 && answer[0] != 0) {
          break;
        }
        Thread.sleep(1000L * Math.max(1, answer[1]));
      }
    } finally {
      if (sock != null) {
        closeQuietly(sock);
      }
    }
    return mine;
  }

  /** One request and its whole response: {status (0: no HTTP answer), Retry-After seconds, 1 when the connection closes}. */
  private static int[] exchange(java.net.Socket sock, byte[] req) throws java.io.IOException {
    sock.getOutputStream().write(req);
    sock.getOutputStream().flush();
    java.io.InputStream in = sock.getInputStream();
    String status = line(in);
    if (status == null) {
      return new int[] {0, 1, 1};
    }
    int retryAfter = 1;
    int length = 0;
    int close = 0;
    for (String h = line(in); h != null && !h.isEmpty(); h = line(in)) {
      String lower = h.toLowerCase(java.util.Locale.ROOT);
      if (lower.startsWith("retry-after:")) {
        retryAfter = Integer.parseInt(h.substring(12).trim());
      } else if (lower.startsWith("content-length:")) {
        length = Integer.parseInt(h.substring(15).trim());
      } else if (lower.startsWith("connection:") && lower.contains("close")) {
        close = 1;
      }
    }
    if (in.readNBytes(length).length < length) {
      close = 1;
    }
    return new int[] {Integer.parseInt(status.split(" ")[1]), retryAfter, close};
  }

  /** A CRLF-terminated line of ASCII, without its CRLF; null at the end of the stream. */
  private static String line(java.io.InputStream in) throws java.io.IOException {
    StringBuilder sb = new StringBuilder();
    for (int c = in.read(); c >= 0; c = in.read()) {
      if (c == '\n') {
        return sb.toString();
      }
      if (c != '\r') {
        sb.append((char) c);
      }
    }
    return sb.length() == 0 ? null : sb.toString();
  }

  private static void closeQuietly(java.net.Socket sock) {
    try {
      sock.close();
    } catch (java.io.IOException e) {
      // nothing left to do with a socket that will not close
    }
  }

  /** Closed loop: {@code concurrency} clients take the bodies in turn; per request {latency ms, time to first token ms, completion tokens}. */
  private static List<double[]> runAll(ExecutorService clients, HttpClient http, int port, List<String> bodies, int concurrency) throws Exception {
    java.util.concurrent.atomic.AtomicInteger next = new java.util.concurrent.atomic.AtomicInteger();
    List<Future<List<double[]>>> fs = new ArrayList<>();
    for (int c = 0; c < concurrency; c++) {
      fs.add(clients.submit(() -> {
        List<double[]> mine = new ArrayList<>();
        for (int i = next.getAndIncrement(); i < bodies.size(); i = next.getAndIncrement()) {
          mine.add(one(http, port, bodies.get(i)));
        }
        return mine;
      }));
    }
    List<double[]> all = new ArrayList<>();
    for (Future<List<double[]>> f : fs) {
      all.addAll(f.get());
    }
    return all;
  }

  private static double[] one(HttpClient http, int port, String body) throws Exception {
    HttpRequest req = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/v1/completions")).header("Content-Type", "application/json")
        .POST(HttpRequest.BodyPublishers.ofString(body)).build();
    long t0 = System.nanoTime();
    HttpResponse<Stream<String>> r = http.send(req, HttpResponse.BodyHandlers.ofLines());
    if (r.statusCode() != 200) {
      throw new IllegalStateException("the server answered " + r.statusCode());
    }
    double first = -1;
    int tokens = 0;
    for (String line : (Iterable<String>) r.body()::iterator) {
      if (!line.startsWith("data: ") || line.equals("data: [DONE]")) {
        continue;
      }
      var c = JSON.readTree(line.substring(6));
      if (first < 0 && c.path("choices").size() > 0) {
        first = (System.nanoTime() - t0) / 1e6;
      }
      if (c.has("usage")) {
        tokens = c.at("/usage/completion_tokens").asInt();
      }
    }
    return new double[] {(System.nanoTime() - t0) / 1e6, first, tokens};
  }

  static double pct(double[] sorted, int p) {
    int i = (int) Math.ceil(p / 100.0 * sorted.length) - 1;
    return sorted[Math.max(0, Math.min(sorted.length - 1, i))];
  }

  private static double round(double v) {
    return Math.round(v * 1000) / 1000.0;
  }

  /** A benchmark over the files it writes. */
  @FunctionalInterface
  public interface Load {
    Map<String, Object> run(Settings s, Path work) throws Exception;
  }

  /** Runs a benchmark ({@link #run} or {@link #flood}) in a fresh temporary directory, removed afterwards. */
  public static Map<String, Object> runInTemp(Load load, Settings s) throws Exception {
    Path work = Files.createTempDirectory("lorafleet-bench-serve");
    try {
      return load.run(s, work);
    } finally {
      try (Stream<Path> walk = Files.walk(work)) {
        walk.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
      }
    }
  }
}
