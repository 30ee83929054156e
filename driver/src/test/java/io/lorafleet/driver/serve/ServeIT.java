package io.lorafleet.driver.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.datasets.prepare.ChatTemplate;
import io.lorafleet.worker.generate.Generator;
import io.lorafleet.worker.generate.Sampling;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.DoraMethod;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.model.Dropout;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.ModelSkeleton;
import io.lorafleet.worker.model.TinyModelSpec;
import io.lorafleet.worker.quant.Quantization;
import io.lorafleet.worker.tokenizer.Tokenizer;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneId;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code serve} over real HTTP (Jetty, and the JDK's HttpClient): 200 concurrent requests over 4
 * adapters and the base, some streamed and some chat, each equal to offline generation of the same
 * request; authentication, the adapter root, unsupported fields, malformed requests, overload,
 * timeouts, graceful drain and loading at run time, each with its status. Overload and timeouts are
 * made deterministic by pausing the scheduler and by a clock the test moves; nothing here decides
 * an outcome by wall-clock time.
 */
class ServeIT {
  static final ObjectMapper JSON = new ObjectMapper();
  static final List<String> WORDS = List.of("the", "cat", "sat", "on", "mat", "dog", "ran", "to", "a", "big", "red", "ball", "user", "assistant",
      "system", ":", "and", "is", "what", "where");
  static final String[] ADAPTERS = {"sql", "chat", "math", "poem"};
  static final String KEY = "sekrit";

  @TempDir static Path tmp;
  static Path model;
  static Path root;
  static LanguageModel base;
  static Tokenizer tok;
  static ApiServer server;
  static final HttpClient HTTP = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();

  /** A clock that moves only when the test says. */
  static final class TestClock extends Clock {
    final AtomicReference<Instant> now = new AtomicReference<>(Instant.parse("2026-12-01T00:00:00Z"));

    void advance(Duration d) {
      now.updateAndGet(t -> t.plus(d));
    }

    @Override
    public Instant instant() {
      return now.get();
    }

    @Override
    public ZoneId getZone() {
      return ZoneOffset.UTC;
    }

    @Override
    public Clock withZone(ZoneId zone) {
      return this;
    }
  }

  @BeforeAll
  static void start() throws Exception {
    model = tmp.resolve("model");
    ModelDirectory.initModel(model, new TinyModelSpec("llama", 2, 32, 4, 2, 64, 1, 64, false), WORDS, 3);
    addChatTemplate(model);
    root = tmp.resolve("adapters");
    List<LoraConfig> cfgs = List.of(LoraConfig.of(2, 4, List.of("q_proj", "v_proj")), LoraConfig.of(6, 3, List.of("all-linear")).withRslora(true),
        LoraConfig.of(4, 8, List.of("down_proj", "k_proj")).withPatterns(Map.of("k_proj", 3), Map.of("k_proj", 5.0)),
        LoraConfig.of(8, 16, List.of("o_proj", "up_proj", "gate_proj")));
    for (int i = 0; i < ADAPTERS.length; i++) {
      writeAdapter(root.resolve(ADAPTERS[i]), cfgs.get(i), i);
    }
    writeAdapter(root.resolve("extra"), LoraConfig.of(3, 6, List.of("q_proj", "o_proj")), 10);
    writeAdapter(root.resolve("dora"), LoraConfig.of(2, 4, List.of("q_proj")).withMethod(DoraMethod.INSTANCE), 11);
    writeAdapter(tmp.resolve("outside/evil"), LoraConfig.of(2, 4, List.of("q_proj")), 12);
    Files.createSymbolicLink(root.resolve("link"), tmp.resolve("outside/evil"));
    base = LanguageModel.load(model, Device.cpu(), DataType.FLOAT32);
    tok = Tokenizer.load(model);
    Map<String, Path> start = new LinkedHashMap<>();
    for (String a : ADAPTERS) {
      start.put(a, root.resolve(a));
    }
    server = ApiServer.start(ServeOptions.builder("base").port(0).apiKey(KEY).adapterRoot(root).maxBatch(8).maxQueue(256)
        .maxKvTokens(256 * 64).requestTimeout(Duration.ofMinutes(10)).build(), base, // a KV budget for 200 requests queued at once
        tok, model, start, new TestClock());
  }

  /** A plain chat template ("role : content" per message) in the model's tokenizer_config.json. */
  static void addChatTemplate(Path model) throws Exception {
    ObjectNode cfg = (ObjectNode) JSON.readTree(model.resolve("tokenizer_config.json").toFile());
    cfg.put("chat_template", "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}{% if add_generation_prompt %}assistant : "
        + "{% endif %}");
    Files.writeString(model.resolve("tokenizer_config.json"), cfg.toString());
  }

  static void writeAdapter(Path dir, LoraConfig c, int seed) throws Exception {
    LoraModel lora = LoraModel.create(ModelSkeleton.read(model), c);
    float[] v = lora.initialParams(seed);
    Random r = new Random(seed);
    for (int k = 0; k < v.length; k++) {
      v[k] += (float) (r.nextGaussian() * 0.5);
    }
    AdapterFormat.write(dir, lora, v, Map.of());
  }

  @AfterAll
  static void stop() {
    server.close();
    tok.close();
    base.close();
  }

  /** A parsed answer: the status, the JSON body (or the last chunk), and for generations the text, finish reason and usage. */
  record Reply(int status, JsonNode body, String text, String finish, int promptTokens, int completionTokens, HttpResponse<String> raw) {}

  static HttpRequest.Builder request(int port, String path, Optional<String> key) {
    HttpRequest.Builder b = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path)).timeout(Duration.ofMinutes(5));
    key.ifPresent(k -> b.header("Authorization", "Bearer " + k));
    return b;
  }

  static CompletableFuture<Reply> postAsync(int port, String path, String body, Optional<String> key) {
    HttpRequest req = request(port, path, key).header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body)).build();
    return HTTP.sendAsync(req, HttpResponse.BodyHandlers.ofString()).thenApply(ServeIT::parse);
  }

  static Reply post(String path, String body) throws Exception {
    return postAsync(server.port(), path, body, Optional.of(KEY)).get();
  }

  static Reply parse(HttpResponse<String> r) {
    try {
      String ct = r.headers().firstValue("Content-Type").orElse("");
      if (ct.startsWith("text/event-stream")) {
        return parseStream(r);
      }
      if (!ct.startsWith("application/json")) {
        return new Reply(r.statusCode(), null, r.body(), null, -1, -1, r);
      }
      JsonNode b = JSON.readTree(r.body());
      if (r.statusCode() != 200 || !b.has("choices")) {
        return new Reply(r.statusCode(), b, null, null, -1, -1, r);
      }
      JsonNode c = b.at("/choices/0");
      String text = c.has("message") ? c.at("/message/content").asText() : c.get("text").asText();
      return new Reply(200, b, text, c.get("finish_reason").asText(), b.at("/usage/prompt_tokens").asInt(), b.at("/usage/completion_tokens").asInt(), r);
    } catch (Exception e) {
      throw new AssertionError("cannot parse " + r.body(), e);
    }
  }

  /** Server-sent events, checked strictly: every event a data line, the last [DONE], one finish reason, usage last. */
  static Reply parseStream(HttpResponse<String> r) throws Exception {
    String[] events = r.body().split("\n\n", -1);
    assertEquals("", events[events.length - 1], "the stream ends with a blank line");
    assertEquals("data: [DONE]", events[events.length - 2]);
    StringBuilder text = new StringBuilder();
    String finish = null;
    JsonNode usage = null;
    JsonNode last = null;
    for (int i = 0; i < events.length - 2; i++) {
      assertTrue(events[i].startsWith("data: "), "event " + i + ": " + events[i]);
      JsonNode c = JSON.readTree(events[i].substring(6));
      last = c;
      if (c.has("error")) {
        return new Reply(c.at("/error/code").asInt(), c, null, null, -1, -1, r);
      }
      assertNotNull(usage == null ? "" : null, "usage comes in the last chunk");
      if (c.get("choices").isEmpty()) {
        usage = c.get("usage");
        continue;
      }
      JsonNode ch = c.at("/choices/0");
      boolean chat = c.get("object").asText().equals("chat.completion.chunk");
      if (chat && i == 0) {
        assertEquals("assistant", ch.at("/delta/role").asText(), "a chat stream opens with the role");
      }
      text.append(chat ? ch.at("/delta/content").asText("") : ch.get("text").asText());
      if (!ch.get("finish_reason").isNull()) {
        assertTrue(finish == null, "one finish reason");
        finish = ch.get("finish_reason").asText();
      }
    }
    assertNotNull(finish, "a finish reason");
    return new Reply(r.statusCode(), last, text.toString(), finish, usage == null ? -1 : usage.get("prompt_tokens").asInt(),
        usage == null ? -1 : usage.get("completion_tokens").asInt(), r);
  }

  /** One request of the concurrent mix and what offline generation needs to redo it. */
  record Planned(String model, boolean chat, boolean stream, String prompt, int maxTokens, double temperature, long seed, String body) {}

  static List<Planned> plan(int n, long seed) {
    Random r = new Random(seed);
    List<Planned> out = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      String m = i % 5 == 4 ? "base" : ADAPTERS[i % 5];
      StringBuilder p = new StringBuilder();
      int words = 1 + r.nextInt(8);
      for (int w = 0; w < words; w++) {
        p.append(w == 0 ? "" : " ").append(WORDS.get(r.nextInt(12)));
      }
      boolean chat = i % 7 == 3;
      boolean stream = i % 4 == 1;
      double temperature = i % 6 == 5 ? 0.8 : 0;
      int max = 3 + r.nextInt(10);
      ObjectNode b = JSON.createObjectNode().put("model", m).put("max_tokens", max).put("temperature", temperature).put("seed", i);
      if (chat) {
        ArrayNode ms = b.putArray("messages");
        ms.addObject().put("role", "system").put("content", "the cat");
        ms.addObject().put("role", "user").put("content", p.toString());
      } else {
        b.put("prompt", p.toString());
      }
      if (stream) {
        b.put("stream", true).putObject("stream_options").put("include_usage", true);
      }
      out.add(new Planned(m, chat, stream, p.toString(), max, temperature, i, b.toString()));
    }
    return out;
  }

  static int[] promptIds(Planned p) {
    if (!p.chat()) {
      return tok.encodePrompt(p.prompt());
    }
    List<Map<String, Object>> msgs = List.of(Map.of("role", "system", "content", "the cat"), Map.of("role", "user", "content", p.prompt()));
    return tok.encode(ChatTemplate.of(tok).orElseThrow().render(msgs, true));
  }

  /** The offline answer: Generator.generate alone, with the adapter read from its directory. */
  static int[] offline(LanguageModel m, Planned p) {
    Optional<AdapterFormat.Loaded> a = p.model().equals("base") ? Optional.empty() : Optional.of(AdapterFormat.read(root.resolve(p.model()), m));
    return Generator.generate(m, a, promptIds(p), new Sampling(p.maxTokens(), p.temperature(), 1.0, p.seed()), tok.eos());
  }

  /**
   * The smallest margin along the offline path: the top-2 logit gap of a greedy token, or for a
   * sampled one the draw's distance to a boundary ({@link #drawMargin}). Below 1e-4 a batch's
   * rounding may choose otherwise.
   */
  static double smallestMargin(LanguageModel m, Planned p, int[] gen) {
    Optional<AdapterFormat.Loaded> a = p.model().equals("base") ? Optional.empty() : Optional.of(AdapterFormat.read(root.resolve(p.model()), m));
    int[] prompt = promptIds(p);
    int[] ids = new int[prompt.length + gen.length - 1];
    System.arraycopy(prompt, 0, ids, 0, prompt.length);
    System.arraycopy(gen, 0, ids, prompt.length, gen.length - 1);
    float[] logits;
    try (NDManager s = m.manager().newSubManager()) {
      var ctx = a.isPresent() ? a.get().model().bind(s, a.get().values(), false, Dropout.OFF).context()
          : io.lorafleet.worker.model.ForwardContext.inference(s, io.lorafleet.worker.model.LinearDelta.NONE);
      logits = m.forward(ctx, Batch.of(new int[][] {ids}, new int[1][ids.length])).toFloatArray();
    }
    int v = logits.length / ids.length;
    double min = Double.POSITIVE_INFINITY;
    java.util.SplittableRandom rng = new java.util.SplittableRandom(p.seed());
    for (int k = 0; k < gen.length; k++) {
      int at = prompt.length - 1 + k;
      if (p.temperature() > 0) {
        min = Math.min(min, drawMargin(java.util.Arrays.copyOfRange(logits, at * v, (at + 1) * v), p.temperature(), rng.nextDouble()));
        continue;
      }
      float best = Float.NEGATIVE_INFINITY;
      float second = Float.NEGATIVE_INFINITY;
      for (int i = 0; i < v; i++) {
        float x = logits[at * v + i];
        if (x > best) {
          second = best;
          best = x;
        } else if (x > second) {
          second = x;
        }
      }
      min = Math.min(min, best - second);
    }
    return min;
  }

  /**
   * For a sampled token (top_p 1, as Generator.sample draws it): how far the draw u·mass falls from
   * the nearest boundary between tokens on the cumulative distribution, as a fraction of the total.
   * Below 1e-4 a batch's rounding of the logits may move a boundary past it.
   */
  static double drawMargin(float[] logits, double temperature, double u) {
    double max = Double.NEGATIVE_INFINITY;
    for (float l : logits) {
      max = Math.max(max, l);
    }
    double[] pr = new double[logits.length];
    double z = 0;
    for (int i = 0; i < pr.length; i++) {
      pr[i] = Math.exp((logits[i] - max) / temperature);
      z += pr[i];
    }
    Integer[] order = new Integer[pr.length];
    for (int i = 0; i < order.length; i++) {
      order[i] = i;
    }
    java.util.Arrays.sort(order, java.util.Comparator.comparingDouble(i -> -pr[i]));
    double mass = 0;
    int keep = 0;
    while (keep < order.length && mass < z) {
      mass += pr[order[keep++]];
    }
    double at = u * mass;
    double c = 0;
    double nearest = Double.POSITIVE_INFINITY;
    for (int j = 0; j < keep; j++) {
      c += pr[order[j]];
      nearest = Math.min(nearest, Math.abs(at - c));
    }
    return nearest / z;
  }

  /** Sends every request at once (held in the queue until all are in, so batches are full) and checks each against offline generation. */
  static void concurrentEqualsOffline(ApiServer s, LanguageModel m, Optional<String> key, List<Planned> plan) throws Exception {
    Scheduler.Stats before = s.scheduler().stats();
    s.scheduler().pause();
    List<CompletableFuture<Reply>> replies = new ArrayList<>();
    for (Planned p : plan) {
      replies.add(postAsync(s.port(), p.chat() ? "/v1/chat/completions" : "/v1/completions", p.body(), key));
    }
    while (s.scheduler().queued() < plan.size()) {
      Thread.sleep(10); // waiting for the requests to arrive, not deciding anything
    }
    s.scheduler().resume();
    List<Reply> got = new ArrayList<>();
    for (CompletableFuture<Reply> f : replies) {
      got.add(f.get()); // all answered before the test runs the model itself
    }
    int nearTies = 0;
    int differed = 0;
    for (int i = 0; i < plan.size(); i++) {
      Planned p = plan.get(i);
      Reply r = got.get(i);
      assertEquals(200, r.status(), "request " + i + ": " + (r.body() == null ? r.raw().body() : r.body()));
      int[] gen = offline(m, p);
      String want = tok.decode(gen);
      boolean tie = smallestMargin(m, p, gen) < 1e-4;
      nearTies += tie ? 1 : 0;
      if (!want.equals(r.text()) || gen.length != r.completionTokens()) {
        differed++;
        assertTrue(tie, "request " + i + " (" + p.model() + ", " + (p.chat() ? "chat" : "completion") + (p.stream() ? ", streamed" : "")
            + ") gave '" + r.text() + "' (" + r.completionTokens() + " tokens) but offline generation gives '" + want + "' (" + gen.length
            + " tokens), with no near-tie on its path");
      }
      assertEquals(promptIds(p).length, r.promptTokens(), "request " + i + " usage.prompt_tokens");
      boolean eos = gen.length > 0 && tok.eos().isPresent() && gen[gen.length - 1] == tok.eos().get();
      assertEquals(eos ? "stop" : "length", r.finish(), "request " + i + " finish_reason");
    }
    Scheduler.Stats after = s.scheduler().stats();
    System.out.printf("serve: %d requests, %d near-tie rows (a greedy top-2 margin, or a sampled draw's distance to a boundary, under 1e-4 "
        + "on the offline path), %d of them differed; %d decode steps, "
        + "%d with mixed adapters, %d late joins, widest batch %d%n", plan.size(), nearTies, differed, after.steps() - before.steps(),
        after.mixedSteps() - before.mixedSteps(), after.lateJoins() - before.lateJoins(), after.widest());
    assertTrue(after.mixedSteps() - before.mixedSteps() > 0, "requests of different adapters must share forward passes");
    assertTrue(after.lateJoins() - before.lateJoins() > 0, "requests must join a batch that is already decoding");
  }

  @Test
  void twoHundredConcurrentRequestsOverFourAdaptersAndTheBaseEqualOfflineGeneration() throws Exception {
    List<Planned> plan = plan(200, 1);
    assertTrue(plan.stream().anyMatch(Planned::stream) && plan.stream().anyMatch(Planned::chat) && plan.stream().anyMatch(p -> p.temperature() > 0));
    concurrentEqualsOffline(server, base, Optional.of(KEY), plan);
  }

  @Test
  void aQuantizedBaseServesMixedAdaptersAsOfflineGenerationOverTheSameBase() throws Exception {
    try (LanguageModel nf4 = LanguageModel.load(model, Device.cpu(), DataType.FLOAT32, Quantization.of("nf4", true))) {
      Map<String, Path> start = new LinkedHashMap<>();
      for (String a : ADAPTERS) {
        start.put(a, root.resolve(a));
      }
      ApiServer q = ApiServer.start(ServeOptions.builder("base").port(0).maxBatch(4).maxQueue(64).maxKvTokens(64 * 64).requestTimeout(Duration.ofMinutes(10))
          .build(), nf4,
          tok, model, start, new TestClock());
      try {
        concurrentEqualsOffline(q, nf4, Optional.empty(), plan(30, 2));
      } finally {
        q.close();
      }
    }
  }

  @Test
  void aStopStringEndsTheTextBeforeItStreamedOrNot() throws Exception {
    String prompt = "the cat sat";
    String full = post("/v1/completions", "{\"model\": \"sql\", \"prompt\": \"" + prompt + "\", \"max_tokens\": 8, \"temperature\": 0}").text();
    String[] words = full.trim().split(" ");
    assertTrue(words.length >= 3, "the completion must be long enough for this test: '" + full + "'");
    String stop = " " + words[2];
    String before = full.substring(0, full.indexOf(stop));
    for (boolean stream : new boolean[] {false, true}) {
      Reply r = post("/v1/completions", "{\"model\": \"sql\", \"prompt\": \"" + prompt + "\", \"max_tokens\": 8, \"temperature\": 0, \"stop\": [\""
          + stop + "\"], \"stream\": " + stream + "}");
      assertEquals(before, r.text(), "streamed: " + stream);
      assertEquals("stop", r.finish());
    }
  }

  @Test
  void authenticationIsRequiredOnV1ButNotOnHealth() throws Exception {
    String body = "{\"model\": \"base\", \"prompt\": \"the\", \"max_tokens\": 2}";
    Reply none = postAsync(server.port(), "/v1/completions", body, Optional.empty()).get();
    assertEquals(401, none.status());
    assertEquals("authentication_error", none.body().at("/error/type").asText());
    assertEquals("Bearer", none.raw().headers().firstValue("WWW-Authenticate").orElse(""));
    assertEquals(401, postAsync(server.port(), "/v1/completions", body, Optional.of("wrong")).get().status());
    assertEquals(401, HTTP.send(request(server.port(), "/v1/models", Optional.empty()).GET().build(), HttpResponse.BodyHandlers.ofString()).statusCode());
    assertEquals(200, HTTP.send(request(server.port(), "/health", Optional.empty()).GET().build(), HttpResponse.BodyHandlers.ofString()).statusCode());
    assertEquals(200, post("/v1/completions", body).status());
  }

  /** GET /metrics (no key, as Prometheus scrapes it): strict Prometheus text whose counters move by what a request did. */
  @Test
  void metricsCountRequestsTokensAndTheQueue() throws Exception {
    Map<String, Double> before = metrics();
    Reply r = post("/v1/completions", "{\"model\": \"chat\", \"prompt\": \"the dog\", \"max_tokens\": 4, \"temperature\": 0}");
    assertEquals(200, r.status());
    assertEquals(400, post("/v1/completions", "{\"model\": \"base\", \"prompt\": \"the\", \"n\": 2}").status());
    Map<String, Double> after = metrics();
    String ok = "lorafleet_serve_requests_total{endpoint=/v1/completions,status=200}";
    String bad = "lorafleet_serve_requests_total{endpoint=/v1/completions,status=400}";
    assertEquals(before.getOrDefault(ok, 0.0) + 1, after.get(ok));
    assertEquals(before.getOrDefault(bad, 0.0) + 1, after.get(bad));
    assertEquals(before.get("lorafleet_serve_generated_tokens_total") + r.completionTokens(), after.get("lorafleet_serve_generated_tokens_total"));
    assertTrue(after.get("lorafleet_serve_decode_steps_total") > before.get("lorafleet_serve_decode_steps_total"));
    assertEquals(0.0, after.get("lorafleet_serve_queued_requests"));
    assertEquals(0.0, after.get("lorafleet_serve_running_requests"));
    assertEquals(ADAPTERS.length, after.get("lorafleet_serve_adapters_loaded").intValue());
  }

  /** The server's metrics by name{label=value,...}, parsed strictly. */
  static Map<String, Double> metrics() throws Exception {
    HttpResponse<String> r = HTTP.send(request(server.port(), "/metrics", Optional.empty()).GET().build(), HttpResponse.BodyHandlers.ofString());
    assertEquals(200, r.statusCode());
    assertTrue(r.headers().firstValue("Content-Type").orElse("").startsWith("text/plain; version=0.0.4"));
    Map<String, Double> out = new LinkedHashMap<>();
    for (var smp : io.lorafleet.driver.metrics.PrometheusText.parse(r.body())) {
      String labels = smp.labels().isEmpty() ? "" : smp.labels().entrySet().stream().map(e -> e.getKey() + "=" + e.getValue())
          .collect(java.util.stream.Collectors.joining(",", "{", "}"));
      out.put(smp.name() + labels, smp.value());
    }
    return out;
  }

  @Test
  void adaptersLoadAndUnloadAtRunTimeFromUnderTheRootOnly() throws Exception {
    String load = "/v1/load_lora_adapter";
    assertEquals(403, post(load, "{\"lora_name\": \"evil\", \"lora_path\": \"" + tmp.resolve("outside/evil") + "\"}").status());
    assertEquals(403, post(load, "{\"lora_name\": \"evil\", \"lora_path\": \"../outside/evil\"}").status());
    Reply link = post(load, "{\"lora_name\": \"evil\", \"lora_path\": \"link\"}");
    assertEquals(403, link.status(), "a symbolic link out of the root");
    assertTrue(link.body().at("/error/message").asText().contains("outside the adapter root"), link.body().toString());
    assertEquals(404, post(load, "{\"lora_name\": \"x\", \"lora_path\": \"missing\"}").status());
    Reply dora = post(load, "{\"lora_name\": \"d\", \"lora_path\": \"dora\"}");
    assertEquals(400, dora.status());
    assertTrue(dora.body().at("/error/message").asText().contains("DoRA"), "refused by name: " + dora.body());
    assertEquals(400, post(load, "{\"lora_name\": \"sql\", \"lora_path\": \"extra\"}").status(), "a name already loaded");
    assertEquals(400, post(load, "{\"lora_name\": \"base\", \"lora_path\": \"extra\"}").status(), "the base's name");
    assertEquals(400, post(load, "{\"lora_name\": \"extra\"}").status());

    String gen = "{\"model\": \"extra\", \"prompt\": \"the dog\", \"max_tokens\": 6, \"temperature\": 0}";
    assertEquals(404, post("/v1/completions", gen).status(), "not loaded yet");
    Reply ok = post(load, "{\"lora_name\": \"extra\", \"lora_path\": \"extra\"}");
    assertEquals(200, ok.status(), String.valueOf(ok.text()));
    JsonNode models = JSON.readTree(HTTP.send(request(server.port(), "/v1/models", Optional.of(KEY)).GET().build(),
        HttpResponse.BodyHandlers.ofString()).body());
    List<String> ids = new ArrayList<>();
    models.get("data").forEach(d -> ids.add(d.get("id").asText()));
    assertEquals(List.of("base", "sql", "chat", "math", "poem", "extra"), ids);
    assertEquals("base", models.at("/data/5/parent").asText());
    Reply r = post("/v1/completions", gen);
    assertEquals(200, r.status());
    int[] want = Generator.generate(base, Optional.of(AdapterFormat.read(root.resolve("extra"), base)), tok.encodePrompt("the dog"),
        Sampling.greedy(6), tok.eos());
    assertEquals(tok.decode(want), r.text());
    assertEquals(200, post("/v1/unload_lora_adapter", "{\"lora_name\": \"extra\"}").status());
    assertEquals(404, post("/v1/completions", gen).status(), "unloaded");
    assertEquals(404, post("/v1/unload_lora_adapter", "{\"lora_name\": \"extra\"}").status());
  }

  @Test
  void unsupportedFieldsAreRefusedAndTheirOffValuesAccepted() throws Exception {
    String head = "{\"model\": \"base\", \"prompt\": \"the\", \"max_tokens\": 2, ";
    Map<String, String> refused = new LinkedHashMap<>();
    refused.put("n", "\"n\": 2");
    refused.put("logprobs", "\"logprobs\": 3");
    refused.put("echo", "\"echo\": true");
    refused.put("best_of", "\"best_of\": 2");
    refused.put("presence_penalty", "\"presence_penalty\": 0.5");
    refused.put("frequency_penalty", "\"frequency_penalty\": 1");
    refused.put("logit_bias", "\"logit_bias\": {\"3\": 10}");
    refused.put("suffix", "\"suffix\": \"x\"");
    refused.put("tools", "\"tools\": [{\"type\": \"function\"}]");
    refused.put("foo", "\"foo\": 1");
    for (var e : refused.entrySet()) {
      Reply r = post("/v1/completions", head + e.getValue() + "}");
      assertEquals(400, r.status(), e.getValue());
      assertEquals(e.getKey(), r.body().at("/error/param").asText(), e.getValue());
    }
    Reply off = post("/v1/completions", head + "\"n\": 1, \"logprobs\": null, \"echo\": false, \"presence_penalty\": 0, \"frequency_penalty\": 0, "
        + "\"best_of\": 1, \"logit_bias\": {}, \"user\": \"u1\"}");
    assertEquals(200, off.status(), String.valueOf(off.body()));
    Reply chatN = post("/v1/chat/completions", "{\"model\": \"base\", \"messages\": [{\"role\": \"user\", \"content\": \"the\"}], \"n\": 3}");
    assertEquals(400, chatN.status());
    assertEquals("n", chatN.body().at("/error/param").asText());
  }

  @Test
  void everyMalformedRequestGetsItsFourHundredWithAJsonError() throws Exception {
    String c = "/v1/completions";
    Map<String, Object[]> cases = new LinkedHashMap<>(); // body -> {path, status, param}
    cases.put("{bad json", new Object[] {c, 400, "body"});
    cases.put("", new Object[] {c, 400, "body"});
    cases.put("[1, 2]", new Object[] {c, 400, "body"});
    cases.put("{\"prompt\": \"the\"}", new Object[] {c, 400, "model"});
    cases.put("{\"model\": 7, \"prompt\": \"the\"}", new Object[] {c, 400, "model"});
    cases.put("{\"model\": \"nope\", \"prompt\": \"the\"}", new Object[] {c, 404, "model"});
    cases.put("{\"model\": \"base\"}", new Object[] {c, 400, "prompt"});
    cases.put("{\"model\": \"base\", \"prompt\": \"\"}", new Object[] {c, 400, "prompt"});
    cases.put("{\"model\": \"base\", \"prompt\": {\"a\": 1}}", new Object[] {c, 400, "prompt"});
    cases.put("{\"model\": \"base\", \"prompt\": [\"a\", \"b\"]}", new Object[] {c, 400, "prompt"});
    cases.put("{\"model\": \"base\", \"prompt\": [1, 99999]}", new Object[] {c, 400, "prompt"});
    cases.put("{\"model\": \"base\", \"prompt\": \"the\", \"max_tokens\": 0}", new Object[] {c, 400, "max_tokens"});
    cases.put("{\"model\": \"base\", \"prompt\": \"the\", \"max_tokens\": \"5\"}", new Object[] {c, 400, "max_tokens"});
    cases.put("{\"model\": \"base\", \"prompt\": \"the\", \"max_tokens\": 64}", new Object[] {c, 400, "max_tokens"});
    cases.put("{\"model\": \"base\", \"prompt\": \"" + "the ".repeat(70) + "\"}", new Object[] {c, 400, "prompt"});
    cases.put("{\"model\": \"base\", \"prompt\": \"the\", \"temperature\": 2.5}", new Object[] {c, 400, "temperature"});
    cases.put("{\"model\": \"base\", \"prompt\": \"the\", \"temperature\": -1}", new Object[] {c, 400, "temperature"});
    cases.put("{\"model\": \"base\", \"prompt\": \"the\", \"top_p\": 0}", new Object[] {c, 400, "top_p"});
    cases.put("{\"model\": \"base\", \"prompt\": \"the\", \"top_p\": 1.5}", new Object[] {c, 400, "top_p"});
    cases.put("{\"model\": \"base\", \"prompt\": \"the\", \"seed\": 1.5}", new Object[] {c, 400, "seed"});
    cases.put("{\"model\": \"base\", \"prompt\": \"the\", \"stop\": [\"a\", \"b\", \"c\", \"d\", \"e\"]}", new Object[] {c, 400, "stop"});
    cases.put("{\"model\": \"base\", \"prompt\": \"the\", \"stop\": [\"\"]}", new Object[] {c, 400, "stop"});
    cases.put("{\"model\": \"base\", \"prompt\": \"the\", \"stream\": \"yes\"}", new Object[] {c, 400, "stream"});
    cases.put("{\"model\": \"base\", \"prompt\": \"the\", \"stream_options\": {\"include_usage\": true}}", new Object[] {c, 400, "stream_options"});
    String chat = "/v1/chat/completions";
    cases.put("{\"model\": \"base\", \"messages\": []}", new Object[] {chat, 400, "messages"});
    cases.put("{\"model\": \"base\", \"messages\": [{\"role\": \"wizard\", \"content\": \"x\"}]}", new Object[] {chat, 400, "messages[0].role"});
    cases.put("{\"model\": \"base\", \"messages\": [{\"role\": \"user\", \"content\": 5}]}", new Object[] {chat, 400, "messages[0].content"});
    cases.put("{\"model\": \"base\", \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}",
        new Object[] {chat, 400, "messages[0].content[0]"});
    cases.put("{\"model\": \"base\", \"prompt\": \"the\"}", new Object[] {chat, 400, "prompt"});
    cases.put("{\"model\": \"base\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_tokens\": 3, \"max_completion_tokens\": 4}",
        new Object[] {chat, 400, "max_completion_tokens"});
    for (var e : cases.entrySet()) {
      Reply r = post((String) e.getValue()[0], e.getKey());
      assertEquals(e.getValue()[1], r.status(), e.getKey() + " -> " + r.body());
      assertEquals(e.getValue()[2], r.body().at("/error/param").asText(), e.getKey() + " -> " + r.body());
      assertFalse(r.body().at("/error/message").asText().isEmpty());
    }
    assertEquals(405, HTTP.send(request(server.port(), c, Optional.of(KEY)).GET().build(), HttpResponse.BodyHandlers.ofString()).statusCode());
    assertEquals(404, post("/v1/embeddings", "{}").status());
    // A body declared larger than the limit is refused from its Content-Length, before any of it is read: a raw request
    // that sends only the headers gets its 413. (A client that sends such a body anyway may see the connection close
    // under it; the JDK 17 client's Expect: 100-continue cannot take a final status instead of 100.)
    try (java.net.Socket sock = new java.net.Socket("127.0.0.1", server.port())) {
      sock.getOutputStream().write(("POST " + c + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + KEY
          + "\r\nContent-Type: application/json\r\nContent-Length: " + (ApiServer.MAX_BODY + 1) + "\r\n\r\n").getBytes(java.nio.charset.StandardCharsets.US_ASCII));
      sock.getOutputStream().flush();
      String head = new java.io.BufferedReader(new java.io.InputStreamReader(sock.getInputStream(), java.nio.charset.StandardCharsets.US_ASCII)).readLine();
      assertTrue(head.startsWith("HTTP/1.1 413 "), head);
    }
    assertEquals(200, post(c, "{\"model\": \"base\", \"prompt\": \"the\", \"max_tokens\": 2}").status(), "the server still serves");
  }

  /** A server with 2 rows and a queue of 3, for overload, timeouts and drain. */
  static ApiServer small(TestClock clock) throws Exception {
    return ApiServer.start(ServeOptions.builder("base").port(0).maxBatch(2).maxQueue(3).requestTimeout(Duration.ofSeconds(30)).build(), base, tok,
        model, Map.of("sql", root.resolve("sql")), clock);
  }

  static String body(String model, int maxTokens, boolean stream) {
    return "{\"model\": \"" + model + "\", \"prompt\": \"the cat\", \"max_tokens\": " + maxTokens + ", \"temperature\": 0, \"stream\": " + stream + "}";
  }

  static void awaitQueued(ApiServer s, int n) throws InterruptedException {
    while (s.scheduler().queued() < n) {
      Thread.sleep(5);
    }
  }

  @Test
  void aFullQueueAnswers429WithRetryAfterAndThenServesTheQueue() throws Exception {
    ApiServer s = small(new TestClock());
    try {
      s.scheduler().pause();
      List<CompletableFuture<Reply>> queued = new ArrayList<>();
      for (int i = 0; i < 3; i++) {
        queued.add(postAsync(s.port(), "/v1/completions", body(i % 2 == 0 ? "sql" : "base", 4, i == 1), Optional.empty()));
      }
      awaitQueued(s, 3);
      Reply over = postAsync(s.port(), "/v1/completions", body("sql", 4, false), Optional.empty()).get();
      assertEquals(429, over.status());
      assertEquals("1", over.raw().headers().firstValue("Retry-After").orElse(""));
      assertEquals("rate_limit_error", over.body().at("/error/type").asText());
      s.scheduler().resume();
      for (CompletableFuture<Reply> f : queued) {
        assertEquals(200, f.get().status());
      }
    } finally {
      s.close();
    }
  }

  @Test
  void requestsPastTheirTimeEndWith408WhetherQueuedOrDecoding() throws Exception {
    TestClock clock = new TestClock();
    ApiServer s = small(clock);
    try {
      int[] gen = Generator.generate(base, Optional.of(AdapterFormat.read(root.resolve("sql"), base)), tok.encodePrompt("the cat"),
          Sampling.greedy(20), tok.eos());
      assertTrue(gen.length >= 3, "the request must still be decoding after its first token for this test");
      s.scheduler().pause();
      CompletableFuture<Reply> decoding = postAsync(s.port(), "/v1/completions", body("sql", 20, false), Optional.empty());
      awaitQueued(s, 1);
      long it = s.scheduler().iterations();
      s.scheduler().resumeFor(1); // admits it and picks its first token, then holds
      while (s.scheduler().iterations() == it) {
        Thread.sleep(5);
      }
      assertEquals(1, s.scheduler().active());
      CompletableFuture<Reply> waiting = postAsync(s.port(), "/v1/completions", body("base", 3, true), Optional.empty());
      awaitQueued(s, 1);
      clock.advance(Duration.ofSeconds(31));
      s.scheduler().resume();
      Reply d = decoding.get();
      assertEquals(408, d.status(), String.valueOf(d.body()));
      assertEquals("timeout_error", d.body().at("/error/type").asText());
      assertEquals(408, waiting.get().status(), "a streamed request that timed out before its first token still gets its status");
      assertEquals(200, postAsync(s.port(), "/v1/completions", body("sql", 3, false), Optional.empty()).get().status());
    } finally {
      s.close();
    }
  }

  @Test
  void shutdownDrainsRequestsInFlightAndRefusesNewOnes() throws Exception {
    ApiServer s = small(new TestClock());
    s.scheduler().pause();
    List<CompletableFuture<Reply>> inFlight = new ArrayList<>();
    inFlight.add(postAsync(s.port(), "/v1/completions", body("sql", 6, false), Optional.empty()));
    inFlight.add(postAsync(s.port(), "/v1/completions", body("base", 6, true), Optional.empty()));
    inFlight.add(postAsync(s.port(), "/v1/completions", body("sql", 5, true), Optional.empty()));
    awaitQueued(s, 3);
    CompletableFuture<Boolean> drained = CompletableFuture.supplyAsync(() -> {
      try {
        return s.shutdown(Duration.ofMinutes(2));
      } catch (Exception e) {
        throw new IllegalStateException(e);
      }
    });
    while (!s.scheduler().draining()) {
      Thread.sleep(5);
    }
    Reply refused = postAsync(s.port(), "/v1/completions", body("sql", 3, false), Optional.empty()).get();
    assertEquals(503, refused.status());
    s.scheduler().resume();
    assertTrue(drained.get(), "every request in flight finished");
    for (CompletableFuture<Reply> f : inFlight) {
      Reply r = f.get();
      assertEquals(200, r.status());
      assertFalse(r.text() == null);
    }
  }
}
