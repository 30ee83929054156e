package io.lorafleet.driver.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.lorafleet.driver.serve.ServeIT.Reply;
import io.lorafleet.driver.serve.ServeIT.TestClock;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.ModelSkeleton;
import io.lorafleet.worker.model.TinyModelSpec;
import io.lorafleet.worker.tokenizer.Tokenizer;
import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.function.Consumer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code serve} as a hostile client uses it, over real HTTP: max_tokens at every boundary up to
 * 2^63 (prompt plus completion in exact arithmetic, never decoded past the context), the KV budget
 * (429 past it, and a cache that never holds more), clients that go away mid-generation (their row
 * freed at the scheduler's next iteration, streamed or not), 400 connections at once against a
 * queue of 64 (each gets an HTTP status), strict JSON, and errors that never carry the server's
 * internals. Outcomes wait on the scheduler's and the server's counters, never on time.
 */
class ServeAbuseIT {
  static final ObjectMapper JSON = new ObjectMapper();
  /** The tiny model's context (max_position_embeddings). */
  static final int CONTEXT = 64;

  @TempDir static Path tmp;
  static Path model;
  static Path root;
  static LanguageModel base;
  static Tokenizer tok;
  static int promptTokens;

  @BeforeAll
  static void start() throws Exception {
    model = tmp.resolve("model");
    ModelDirectory.initModel(model, new TinyModelSpec("llama", 2, 32, 4, 2, 64, 1, CONTEXT, false), ServeIT.WORDS, 3);
    ServeIT.addChatTemplate(model);
    root = tmp.resolve("adapters");
    LoraModel lora = LoraModel.create(ModelSkeleton.read(model), LoraConfig.of(2, 4, List.of("q_proj", "v_proj")));
    AdapterFormat.write(root.resolve("sql"), lora, lora.initialParams(1), Map.of());
    base = LanguageModel.load(model, Device.cpu(), DataType.FLOAT32);
    tok = Tokenizer.load(model);
    promptTokens = tok.encodePrompt("the cat").length;
  }

  @AfterAll
  static void stop() {
    tok.close();
    base.close();
  }

  static ApiServer server(Consumer<ServeOptions.Builder> settings) throws Exception {
    ServeOptions.Builder b = ServeOptions.builder("base").port(0).adapterRoot(root).maxBatch(2).maxQueue(3).requestTimeout(Duration.ofMinutes(5));
    settings.accept(b);
    return ApiServer.start(b.build(), base, tok, model, Map.of("sql", root.resolve("sql")), new TestClock());
  }

  static Reply post(ApiServer s, String path, String body) throws Exception {
    return ServeIT.postAsync(s.port(), path, body, Optional.empty()).get();
  }

  static String completion(Object maxTokens) {
    return "{\"model\": \"sql\", \"prompt\": \"the cat\", \"temperature\": 0, \"max_tokens\": " + maxTokens + "}";
  }

  /** An error reply: its status, the param it names, and a message in the server's own words. */
  static void assertError(Reply r, int status, String param, String... mentions) {
    assertEquals(status, r.status(), String.valueOf(r.body()));
    assertEquals(param, r.body().at("/error/param").asText(), r.body().toString());
    String m = r.body().at("/error/message").asText();
    for (String x : mentions) {
      assertTrue(m.contains(x), "'" + m + "' must mention " + x);
    }
    assertInternalsHidden(m);
  }

  static void assertInternalsHidden(String message) {
    for (String internal : List.of("java.", "Exception", "jackson", "jetty", "\tat ")) {
      assertFalse(message.contains(internal), "an error message must not show the server's internals: " + message);
    }
  }

  @Test
  void maxTokensAtEveryBoundaryFitsTheContextOrIsRefusedNamingBothNumbers() throws Exception {
    ApiServer s = server(b -> {});
    try {
      int left = CONTEXT - promptTokens;
      Reply fits = post(s, "/v1/completions", completion(left));
      assertEquals(200, fits.status(), String.valueOf(fits.body()));
      assertTrue(fits.completionTokens() <= left, fits.completionTokens() + " tokens");
      if (fits.finish().equals("length")) {
        assertEquals(left, fits.completionTokens(), "a row that ran to its max_tokens ends exactly at the context");
      }
      // Each refused before any decoding, naming the context and the exact total asked (no 32- or 64-bit wrap-around).
      for (String asked : List.of(String.valueOf(left + 1), "2147483646", "2147483647", "2147483648", "1000000000000", "9223372036854775807",
          "9223372036854775808", "100000000000000000000000000000")) {
        String total = new java.math.BigInteger(asked).add(java.math.BigInteger.valueOf(promptTokens)).toString();
        assertError(post(s, "/v1/completions", completion(asked)), 400, "max_tokens", "maximum context length is " + CONTEXT, total);
      }
      assertError(post(s, "/v1/completions", completion("5.0")), 400, "max_tokens", "must be an integer", "5.0");
      assertError(post(s, "/v1/completions", completion("1.5")), 400, "max_tokens", "must be an integer");
      assertError(post(s, "/v1/completions", completion("1e12")), 400, "max_tokens", "must be an integer");
      assertError(post(s, "/v1/completions", completion("\"5\"")), 400, "max_tokens", "must be an integer");
      assertError(post(s, "/v1/completions", completion("0")), 400, "max_tokens", "at least 1", "0");
      assertError(post(s, "/v1/completions", completion("-2147483648")), 400, "max_tokens", "at least 1");
      String chat = "{\"model\": \"sql\", \"messages\": [{\"role\": \"user\", \"content\": \"the\"}], \"max_completion_tokens\": 2147483647}";
      assertError(post(s, "/v1/chat/completions", chat), 400, "max_completion_tokens", "maximum context length is " + CONTEXT);
      // No other integer wraps around into range: 2^32 + 1 is not n = 1, nor a token id 1 (nor is 2^64 + 1).
      String head = "{\"model\": \"sql\", \"max_tokens\": 2, ";
      assertError(post(s, "/v1/completions", head + "\"prompt\": \"the\", \"n\": 4294967297}"), 400, "n");
      assertError(post(s, "/v1/completions", head + "\"prompt\": \"the\", \"best_of\": 4294967297}"), 400, "best_of");
      assertError(post(s, "/v1/completions", head + "\"prompt\": [1, 4294967297]}"), 400, "prompt", "4294967297");
      assertError(post(s, "/v1/completions", head + "\"prompt\": [18446744073709551617]}"), 400, "prompt");
      assertEquals(0, s.scheduler().reservedKvTokens(), "nothing refused holds a reservation");
      assertEquals(0, s.scheduler().active());
    } finally {
      s.close();
    }
  }

  @Test
  void maxModelLenIsTheContextOfEveryRequestAndMayNotExceedTheModels() throws Exception {
    ApiServer s = server(b -> b.maxModelLen(16));
    try {
      assertEquals(200, post(s, "/v1/completions", completion(16 - promptTokens)).status());
      assertError(post(s, "/v1/completions", completion(17 - promptTokens)), 400, "max_tokens", "maximum context length is 16", "17");
      // chat's default max_tokens is what --max-model-len leaves, so a chat request without one ends there at the latest
      Reply chat = post(s, "/v1/chat/completions", "{\"model\": \"sql\", \"messages\": [{\"role\": \"user\", \"content\": \"the\"}], "
          + "\"temperature\": 0}");
      assertEquals(200, chat.status(), String.valueOf(chat.body()));
      assertTrue(chat.promptTokens() + chat.completionTokens() <= 16, chat.promptTokens() + " + " + chat.completionTokens());
      if (chat.finish().equals("length")) {
        assertEquals(16, chat.promptTokens() + chat.completionTokens(), "a row that ran to the end of its context");
      }
    } finally {
      s.close();
    }
    IllegalArgumentException past = assertThrows(IllegalArgumentException.class, () -> server(b -> b.maxModelLen(CONTEXT + 1)));
    assertTrue(past.getMessage().contains("--max-model-len " + (CONTEXT + 1)) && past.getMessage().contains(String.valueOf(CONTEXT)),
        past.getMessage());
    IllegalArgumentException small = assertThrows(IllegalArgumentException.class, () -> server(b -> b.maxKvTokens(CONTEXT - 1)));
    assertTrue(small.getMessage().contains("--max-kv-tokens " + (CONTEXT - 1)), small.getMessage());
  }

  /**
   * The KV budget: reservations of the running and waiting requests never pass it (429 with
   * Retry-After), and a request joins the batch only while rows times the longest reservation fit
   * it, so the cache never holds more positions than the budget, padding included.
   */
  @Test
  void theKvBudgetBoundsReservationsAndTheCacheItself() throws Exception {
    int longRes = promptTokens + 40;
    int shortRes = promptTokens + 20;
    long budget = longRes + shortRes + 4; // both fit as reservations; side by side they would hold 2 x longRes positions
    assertTrue(2L * longRes > budget);
    ApiServer s = server(b -> b.maxKvTokens(budget));
    try {
      s.scheduler().pause();
      var first = ServeIT.postAsync(s.port(), "/v1/completions", completion(40), Optional.empty());
      ServeIT.awaitQueued(s, 1);
      var second = ServeIT.postAsync(s.port(), "/v1/completions", completion(20), Optional.empty());
      ServeIT.awaitQueued(s, 2);
      assertEquals(longRes + shortRes, s.scheduler().reservedKvTokens());
      Reply over = post(s, "/v1/completions", completion(5));
      assertEquals(429, over.status(), String.valueOf(over.body()));
      assertEquals("1", over.raw().headers().firstValue("Retry-After").orElse(""));
      String m = over.body().at("/error/message").asText();
      assertTrue(m.contains(String.valueOf(budget)) && m.contains("--max-kv-tokens") && m.contains(String.valueOf(promptTokens + 5)), m);
      s.scheduler().resume();
      assertEquals(200, first.get().status());
      assertEquals(200, second.get().status());
      Scheduler.Stats st = s.scheduler().stats();
      assertTrue(st.peakCacheTokens() <= budget, "the cache held " + st.peakCacheTokens() + " positions, past the budget " + budget);
      assertEquals(1, st.widest(), "the second request waits until the first leaves: together they would pass the budget");
      assertEquals(0, s.scheduler().reservedKvTokens());
      assertEquals(200, post(s, "/v1/completions", completion(5)).status(), "the budget is free again");
    } finally {
      s.close();
    }
  }

  /** A client that closes its connection frees its row at the scheduler's next iteration, streamed or not, long before its tokens are done. */
  @Test
  void aClientThatGoesAwayFreesItsRowAtOnceStreamedOrNot() throws Exception {
    for (boolean stream : new boolean[] {false, true}) {
      ApiServer s = server(b -> {});
      try {
        s.scheduler().pause();
        String body = "{\"model\": \"sql\", \"prompt\": \"the cat\", \"max_tokens\": 50, \"temperature\": 0, \"stream\": " + stream + "}";
        Socket sock = new Socket("127.0.0.1", s.port());
        sock.getOutputStream().write(rawPost("/v1/completions", body));
        sock.getOutputStream().flush();
        ServeIT.awaitQueued(s, 1);
        step(s); // admitted, prefilled, its first token chosen
        assertEquals(1, s.scheduler().active());
        long stepsBefore = s.scheduler().steps();
        sock.close(); // the client goes away
        while (s.disconnects() == 0) {
          Thread.sleep(2); // waiting for the server to notice, not deciding anything
        }
        step(s);
        assertEquals(0, s.scheduler().active(), "streamed: " + stream + ": the row must leave at the next iteration");
        assertEquals(stepsBefore, s.scheduler().steps(), "streamed: " + stream + ": no decode step ran for a client that had gone");
        assertEquals(0, s.scheduler().reservedKvTokens());
        s.scheduler().resume();
        assertEquals(200, post(s, "/v1/completions", completion(3)).status());
        assertEquals(1, s.disconnects(), "a client that stays is not counted");
      } finally {
        s.close();
      }
    }
  }

  static void step(ApiServer s) throws InterruptedException {
    long it = s.scheduler().iterations();
    s.scheduler().resumeFor(1);
    while (s.scheduler().iterations() == it) {
      Thread.sleep(2);
    }
  }

  static byte[] rawPost(String path, String body) {
    byte[] b = body.getBytes(StandardCharsets.UTF_8);
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    out.writeBytes(("POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " + b.length + "\r\n\r\n")
        .getBytes(StandardCharsets.US_ASCII));
    out.writeBytes(b);
    return out.toByteArray();
  }

  /**
   * 400 clients connect at once to a server with --max-queue 64 and a connection limit of 512:
   * every connection gets an HTTP status (never a reset). With the scheduler held, exactly 64 wait
   * and the other 336 get 429; the 64 then get 200.
   */
  @Test
  void fourHundredConnectionsAtOnceEachGetAnHttpStatus() throws Exception {
    int clients = 400;
    ApiServer s = server(b -> b.maxBatch(8).maxQueue(64).maxConnections(512));
    ExecutorService pool = Executors.newFixedThreadPool(clients);
    try {
      s.scheduler().pause();
      CountDownLatch go = new CountDownLatch(1);
      byte[] req = rawPost("/v1/completions", completion(3));
      List<Future<String>> statuses = new ArrayList<>();
      for (int c = 0; c < clients; c++) {
        statuses.add(pool.submit(() -> {
          go.await();
          try (Socket sock = new Socket("127.0.0.1", s.port())) {
            sock.setSoTimeout(300_000);
            sock.getOutputStream().write(req);
            sock.getOutputStream().flush();
            return statusLine(sock.getInputStream());
          } catch (IOException e) {
            return "no HTTP answer: " + e;
          }
        }));
      }
      go.countDown();
      while (s.scheduler().queued() < 64 || answered(s, 429) < clients - 64) {
        Thread.sleep(10); // waiting for every request to arrive, not deciding anything
      }
      s.scheduler().resume();
      Map<String, Integer> counts = new TreeMap<>();
      for (Future<String> f : statuses) {
        counts.merge(f.get(), 1, Integer::sum);
      }
      assertEquals(Map.of("HTTP/1.1 200 OK", 64, "HTTP/1.1 429 Too Many Requests", clients - 64), counts);
    } finally {
      pool.shutdownNow();
      s.close();
    }
  }

  static String statusLine(InputStream in) throws IOException {
    String line = new BufferedReader(new InputStreamReader(in, StandardCharsets.US_ASCII)).readLine();
    return line == null ? "no HTTP answer: the connection closed" : line;
  }

  /** Requests to /v1/completions answered with {@code status} so far, from the server's own metrics. */
  static long answered(ApiServer s, int status) throws Exception {
    var r = ServeIT.HTTP.send(ServeIT.request(s.port(), "/metrics", Optional.empty()).GET().build(),
        java.net.http.HttpResponse.BodyHandlers.ofString());
    for (var smp : io.lorafleet.driver.metrics.PrometheusText.parse(r.body())) {
      if (smp.name().equals("lorafleet_serve_requests_total") && smp.labels().get("endpoint").equals("/v1/completions")
          && smp.labels().get("status").equals(String.valueOf(status))) {
        return (long) smp.value();
      }
    }
    return 0;
  }

  /** Bodies that are not exactly one UTF-8 JSON value get 400 naming the body; whitespace around one is fine. */
  @Test
  void onlyOneStrictJsonValueIsABody() throws Exception {
    ApiServer s = server(b -> {});
    try {
      String ok = completion(2);
      Map<String, byte[]> bad = new LinkedHashMap<>();
      bad.put("trailing text", (ok + " trailing").getBytes(StandardCharsets.UTF_8));
      bad.put("a second value", (ok + " {\"model\": \"sql\"}").getBytes(StandardCharsets.UTF_8));
      bad.put("a number after it", (ok + " 7").getBytes(StandardCharsets.UTF_8));
      bad.put("a key twice", "{\"model\": \"sql\", \"model\": \"base\", \"prompt\": \"the\"}".getBytes(StandardCharsets.UTF_8));
      bad.put("deep nesting", ("{\"model\": \"sql\", \"prompt\": \"the\", \"user\": " + "[".repeat(40) + "]".repeat(40) + "}")
          .getBytes(StandardCharsets.UTF_8));
      bad.put("UTF-16", ok.getBytes(StandardCharsets.UTF_16LE));
      byte[] latin = ok.replace("the cat", "the caf\u00e9").getBytes(StandardCharsets.ISO_8859_1);
      bad.put("Latin-1", latin);
      bad.put("only whitespace", " \n ".getBytes(StandardCharsets.UTF_8));
      for (var e : bad.entrySet()) {
        Reply r = postBytes(s, e.getValue());
        assertError(r, 400, "body");
      }
      Reply utf8 = postBytes(s, ("\n\t " + ok.replace("the cat", "the caf\u00e9") + " \r\n").getBytes(StandardCharsets.UTF_8));
      assertEquals(200, utf8.status(), "whitespace around one value, and UTF-8 text: " + utf8.body());
    } finally {
      s.close();
    }
  }

  static Reply postBytes(ApiServer s, byte[] body) throws Exception {
    var req = ServeIT.request(s.port(), "/v1/completions", Optional.empty()).header("Content-Type", "application/json")
        .POST(java.net.http.HttpRequest.BodyPublishers.ofByteArray(body)).build();
    return ServeIT.parse(ServeIT.HTTP.send(req, java.net.http.HttpResponse.BodyHandlers.ofString()));
  }

  /** Every error is OpenAI's JSON body in the server's own words: a NUL in a path, and what Jetty refuses before the routes. */
  @Test
  void everyErrorIsAJsonBodyWithoutTheServersInternals() throws Exception {
    ApiServer s = server(b -> {});
    try {
      Reply nul = post(s, "/v1/load_lora_adapter", "{\"lora_name\": \"x\", \"lora_path\": \"sql\\u0000/../../etc\"}");
      assertError(nul, 400, "lora_path", "character");
      JsonNode models = JSON.readTree(ServeIT.HTTP.send(ServeIT.request(s.port(), "/v1/models", Optional.empty()).GET().build(),
          java.net.http.HttpResponse.BodyHandlers.ofString()).body());
      assertEquals(2, models.get("data").size(), "nothing was loaded: " + models);
      // Refused by Jetty before any route (a malformed request line, a negative length, a space in a header name); each request is
      // read whole, so the server's close after its answer never races bytes still unread.
      for (String raw : List.of("GARBAGE\r\n\r\n", "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
          "GET /health HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n")) {
        try (Socket sock = new Socket("127.0.0.1", s.port())) {
          sock.setSoTimeout(60_000);
          sock.getOutputStream().write(raw.getBytes(StandardCharsets.US_ASCII));
          sock.getOutputStream().flush();
          String head = new String(sock.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
          String status = head.substring(0, head.indexOf("\r\n"));
          assertTrue(status.matches("HTTP/1\\.1 4\\d\\d .*"), status);
          assertTrue(head.toLowerCase().contains("content-type: application/json"), head);
          JsonNode err = JSON.readTree(head.substring(head.indexOf("\r\n\r\n") + 4));
          assertEquals(Integer.parseInt(status.split(" ")[1]), err.at("/error/code").asInt(), head);
          assertInternalsHidden(err.at("/error/message").asText());
        }
      }
    } finally {
      s.close();
    }
  }
}
