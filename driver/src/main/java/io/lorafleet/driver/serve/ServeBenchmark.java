package io.lorafleet.driver.serve;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.CausalLM;
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
import java.util.Optional;
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

  public static Map<String, Object> run(Settings s, Path work) throws Exception {
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
    Map<String, Object> out = new LinkedHashMap<>();
    out.put("settings", s);
    try (CausalLM base = CausalLM.load(model, Device.cpu(), DataType.FLOAT32); Tokenizer tok = Tokenizer.load(model)) {
      Map<String, Object> batched = load(s, s.maxBatch(), base, tok, model, adapters, words);
      Map<String, Object> serial = load(s, 1, base, tok, model, adapters, words);
      out.put("continuous_batching", batched);
      out.put("one_row_per_batch", serial);
      out.put("throughput_ratio", round((double) batched.get("output_tokens_per_s") / (double) serial.get("output_tokens_per_s")));
    }
    return out;
  }

  private static Map<String, Object> load(Settings s, int maxBatch, CausalLM base, Tokenizer tok, Path model, Map<String, Path> adapters,
      List<String> words) throws Exception {
    ServeOptions o = new ServeOptions("127.0.0.1", 0, Optional.empty(), Optional.empty(), "base", maxBatch, Math.max(16, 2 * s.concurrency()),
        Duration.ofHours(1));
    ApiServer server = ApiServer.start(o, base, tok, model, adapters, Clock.systemUTC());
    HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
    List<String> names = new ArrayList<>(adapters.keySet());
    names.add("base");
    ExecutorService clients = Executors.newFixedThreadPool(s.concurrency());
    try {
      Random r = new Random(s.seed());
      List<String> bodies = new ArrayList<>();
      for (int i = 0; i < s.requests() + s.concurrency(); i++) {
        StringBuilder p = new StringBuilder();
        for (int t = 0; t < s.promptTokens(); t++) {
          p.append(t == 0 ? "" : " ").append(words.get(r.nextInt(words.size())));
        }
        ObjectNode b = JSON.createObjectNode().put("model", names.get(i % names.size())).put("prompt", p.toString()).put("max_tokens", s.maxTokens())
            .put("temperature", 0).put("stream", true);
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

  /** Runs the benchmark in a fresh temporary directory, removed afterwards. */
  public static Map<String, Object> runInTemp(Settings s) throws Exception {
    Path work = Files.createTempDirectory("lorafleet-bench-serve");
    try {
      return run(s, work);
    } finally {
      try (Stream<Path> walk = Files.walk(work)) {
        walk.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
      }
    }
  }
}
