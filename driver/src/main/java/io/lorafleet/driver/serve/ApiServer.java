package io.lorafleet.driver.serve;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Clock;
import java.time.Duration;
import java.util.Iterator;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.atomic.AtomicInteger;
import org.eclipse.jetty.http.HttpHeader;
import org.eclipse.jetty.io.Content;
import org.eclipse.jetty.server.Handler;
import org.eclipse.jetty.server.HttpConfiguration;
import org.eclipse.jetty.server.HttpConnectionFactory;
import org.eclipse.jetty.server.NetworkConnectionLimit;
import org.eclipse.jetty.server.Request;
import org.eclipse.jetty.server.Response;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import org.eclipse.jetty.util.Blocker;
import org.eclipse.jetty.util.Callback;
import org.eclipse.jetty.util.thread.QueuedThreadPool;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The HTTP side of {@code lorafleet serve}, on Jetty 12's core handler API: OpenAI's
 * {@code POST /v1/completions} and {@code POST /v1/chat/completions} (with server-sent events when
 * {@code stream} is true), {@code GET /v1/models}, and vLLM's {@code POST /v1/load_lora_adapter} and
 * {@code POST /v1/unload_lora_adapter}; {@code GET /health} and {@code GET /metrics} (Prometheus text)
 * answer without a key. Each generation
 * request waits on its own pool thread for the scheduler's events, so a slow client never holds up
 * the batch. Errors are OpenAI's JSON error bodies.
 */
public final class ApiServer implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(ApiServer.class);
  private static final ObjectMapper JSON = new ObjectMapper();
  /** Request bodies larger than this are refused (413). */
  static final int MAX_BODY = 4 << 20;

  private final ServeOptions options;
  private final AdapterRegistry adapters;
  private final Scheduler scheduler;
  private final OpenAiRequests requests;
  private final Server server;
  private final ServerConnector connector;
  private final AtomicInteger inFlight = new AtomicInteger();
  /** Requests answered, by "endpoint status". */
  private final java.util.concurrent.ConcurrentSkipListMap<String, java.util.concurrent.atomic.LongAdder> answered =
      new java.util.concurrent.ConcurrentSkipListMap<>();
  private static final java.util.Set<String> ENDPOINTS = java.util.Set.of("/v1/models", "/v1/completions", "/v1/chat/completions",
      "/v1/load_lora_adapter", "/v1/unload_lora_adapter");
  private final long created;
  private final Clock clock;
  private final Path modelDir;
  private final DisconnectWatch disconnects;

  private ApiServer(ServeOptions options, LanguageModel model, Tokenizer tok, Path modelDir, Map<String, Path> adapterDirs, Clock clock)
      throws IOException {
    this.options = options;
    this.modelDir = modelDir;
    this.clock = clock;
    this.created = clock.instant().getEpochSecond();
    int context = options.context(model.config().maxPositions());
    long kvTokens = options.kvTokens(context);
    this.adapters = new AdapterRegistry(model, options.servedModelName(), options.adapterRoot());
    adapterDirs.forEach(adapters::loadTrusted);
    this.scheduler = new Scheduler(model, adapters, options.maxBatch(), options.maxQueue(), kvTokens, clock);
    this.requests = new OpenAiRequests(options.servedModelName(), adapters, tok, context, model.config().vocabSize(), clock, options.requestTimeout());
    // Every queued and running request holds a thread while it waits; the rest answer at once (429, 4xx, /health, /metrics).
    QueuedThreadPool pool = new QueuedThreadPool(options.maxQueue() + options.maxBatch() + ServeOptions.CONNECTION_HEADROOM, 8);
    pool.setName("lorafleet-http");
    this.server = new Server(pool);
    server.setErrorHandler(new JsonErrorHandler());
    HttpConfiguration http = new HttpConfiguration();
    http.setSendServerVersion(false);
    this.connector = new ServerConnector(server, new HttpConnectionFactory(http));
    connector.setHost(options.host());
    connector.setPort(options.port());
    // Past --max-connections Jetty stops accepting, and new connections wait in the kernel's accept queue (as long again, up
    // to net.core.somaxconn) until one closes, instead of being refused: see the README on serve under load.
    connector.setAcceptQueueSize(options.maxConnections());
    server.addBean(new NetworkConnectionLimit(options.maxConnections(), connector));
    server.addConnector(connector);
    server.setHandler(new Routes());
    this.disconnects = new DisconnectWatch(); // last: a thread of its own, started once nothing above can fail
  }

  /** Loads the given adapters, starts the scheduler and binds the port (0: any free one). */
  public static ApiServer start(ServeOptions options, LanguageModel model, Tokenizer tok, Path modelDir, Map<String, Path> adapterDirs, Clock clock)
      throws Exception {
    if (model.config().arch().encoder()) {
      throw new IllegalArgumentException(modelDir + " is a " + model.config().modelType() + " sequence classifier: serve generates text and needs a "
          + "causal LM; evaluate a classifier with lorafleet eval");
    }
    ApiServer s = new ApiServer(options, model, tok, modelDir, adapterDirs, clock);
    s.scheduler.start();
    try {
      s.server.start();
    } catch (Exception e) {
      s.scheduler.close();
      s.adapters.close();
      s.disconnects.close();
      throw new IllegalArgumentException("cannot listen on " + options.host() + ":" + options.port() + ": " + e.getMessage(), e);
    }
    return s;
  }

  public int port() {
    return connector.getLocalPort();
  }

  public Scheduler scheduler() {
    return scheduler;
  }

  /** Clients noticed gone while their generation waited or ran. */
  long disconnects() {
    return disconnects.disconnects();
  }

  /**
   * Graceful shutdown: takes no new generations (503), lets every accepted one finish and its
   * response be written, for at most {@code timeout}, then stops. Returns whether all finished.
   */
  public boolean shutdown(Duration timeout) throws Exception {
    long until = System.nanoTime() + timeout.toNanos();
    boolean drained = scheduler.drain(timeout);
    synchronized (inFlight) {
      while (inFlight.get() > 0 && System.nanoTime() < until) {
        inFlight.wait(Math.max(1, (until - System.nanoTime()) / 1_000_000));
      }
      drained &= inFlight.get() == 0;
    }
    close();
    return drained;
  }

  @Override
  public void close() {
    try {
      server.stop();
    } catch (Exception e) {
      LOG.warn("stopping the HTTP server: {}", e.toString());
    }
    scheduler.close();
    adapters.close();
    disconnects.close();
  }

  private final class Routes extends Handler.Abstract {
    @Override
    public boolean handle(Request req, Response res, Callback cb) {
      String path = req.getHttpURI().getPath();
      String method = req.getMethod();
      try {
        if (path.equals("/health")) {
          send(res, cb, 200, JSON.createObjectNode().put("status", "ok"));
          return true;
        }
        if (path.equals("/metrics")) {
          allow(method, "GET");
          res.setStatus(200);
          res.getHeaders().put(HttpHeader.CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
          Content.Sink.write(res, true, metrics(), cb);
          return true;
        }
        authorize(req);
        switch (path) {
          case "/v1/models" -> {
            allow(method, "GET");
            send(res, cb, 200, models());
          }
          case "/v1/completions" -> generate(OpenAiRequests.Kind.COMPLETION, req, res, cb);
          case "/v1/chat/completions" -> generate(OpenAiRequests.Kind.CHAT, req, res, cb);
          case "/v1/load_lora_adapter" -> {
            allow(method, "POST");
            ObjectNode b = object(body(req), "lora_name", "lora_path");
            String name = required(b, "lora_name");
            adapters.loadUnderRoot(name, required(b, "lora_path"));
            LOG.info("loaded adapter {} from {}", name, b.get("lora_path").asText());
            sendText(res, cb, "Success: LoRA adapter '" + name + "' added successfully.");
          }
          case "/v1/unload_lora_adapter" -> {
            allow(method, "POST");
            ObjectNode b = object(body(req), "lora_name", "lora_int_id");
            String name = required(b, "lora_name");
            adapters.unload(name);
            LOG.info("unloaded adapter {}", name);
            sendText(res, cb, "Success: LoRA adapter '" + name + "' removed successfully.");
          }
          default -> throw new ApiError(404, "not_found_error", Optional.empty(), "no endpoint " + method + " " + path);
        }
      } catch (ApiError e) {
        sendError(res, cb, e);
      } catch (Exception | LinkageError | AssertionError e) { // the server's own fault: logged whole, answered without its text
        LOG.error("{} {} failed", method, path, e);
        sendError(res, cb, ApiError.server(method + " " + path));
      }
      String endpoint = ENDPOINTS.contains(path) ? path : "other";
      answered.computeIfAbsent(endpoint + " " + res.getStatus(), k -> new java.util.concurrent.atomic.LongAdder()).increment();
      return true;
    }
  }

  private void generate(OpenAiRequests.Kind kind, Request req, Response res, Callback cb) {
    allow(req.getMethod(), "POST");
    OpenAiRequests.Parsed p = requests.parse(kind, body(req));
    Generation g = p.generation();
    try {
      scheduler.submit(g);
    } catch (ApiError e) {
      g.release(adapters);
      throw e;
    }
    inFlight.incrementAndGet();
    Optional<DisconnectWatch.Watch> watch = disconnects.watch(req, () -> {
      g.cancel(); // the client went away: its row leaves at the scheduler's next iteration
      scheduler.wake();
    });
    try {
      OpenAiResponses r = new OpenAiResponses(p, created());
      if (p.stream()) {
        stream(r, g, res, cb, watch);
      } else {
        Generation.Event e = take(g);
        while (e instanceof Generation.Delta) {
          e = take(g);
        }
        if (e instanceof Generation.Failed f) {
          throw f.error();
        }
        unwatch(watch, res);
        send(res, cb, 200, r.whole((Generation.Done) e));
      }
    } finally {
      unwatch(watch, res); // before an error is written, too
      synchronized (inFlight) {
        inFlight.decrementAndGet();
        inFlight.notifyAll();
      }
    }
  }

  /**
   * Stops watching before the response completes, so the watch never reads what Jetty would; a
   * client that pipelined a request behind this one has lost it to the watch, and the connection
   * closes after this response so that it sends it again.
   */
  private static void unwatch(Optional<DisconnectWatch.Watch> watch, Response res) {
    watch.ifPresent(w -> {
      w.close();
      if (w.pipelined() && !res.isCommitted()) {
        res.getHeaders().put(HttpHeader.CONNECTION, "close");
      }
    });
  }

  /** Server-sent events; headers wait for the first event, so a request that fails before any text gets its status. */
  private void stream(OpenAiResponses r, Generation g, Response res, Callback cb, Optional<DisconnectWatch.Watch> watch) {
    Generation.Event e = take(g);
    if (e instanceof Generation.Failed f) {
      throw f.error();
    }
    res.setStatus(200);
    res.getHeaders().put(HttpHeader.CONTENT_TYPE, "text/event-stream; charset=utf-8");
    res.getHeaders().put(HttpHeader.CACHE_CONTROL, "no-cache");
    try {
      event(res, r.first());
      while (true) {
        if (e instanceof Generation.Delta d) {
          event(res, r.delta(d.text()));
        } else if (e instanceof Generation.Done d) {
          event(res, r.finish(d));
          if (r.includeUsage()) {
            event(res, r.usageChunk(d));
          }
          break;
        } else if (e instanceof Generation.Failed f) {
          event(res, f.error().body(JSON));
          break;
        }
        e = take(g);
      }
      unwatch(watch, res);
      Content.Sink.write(res, true, "data: [DONE]\n\n", cb);
    } catch (IOException x) {
      g.cancel(); // the client went away: free its row
      scheduler.wake();
      cb.failed(x);
    }
  }

  private void event(Response res, Optional<ObjectNode> chunk) throws IOException {
    if (chunk.isPresent()) {
      event(res, chunk.get());
    }
  }

  private void event(Response res, ObjectNode chunk) throws IOException {
    try (Blocker.Callback b = Blocker.callback()) {
      res.write(false, ByteBuffer.wrap(("data: " + JSON.writeValueAsString(chunk) + "\n\n").getBytes(StandardCharsets.UTF_8)), b);
      b.block();
    }
  }

  private Generation.Event take(Generation g) {
    try {
      return g.events.take();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      g.cancel();
      throw new ApiError(503, "service_unavailable", Optional.empty(), "interrupted");
    }
  }

  /** Seconds since the epoch on the server's clock, for a response's "created". */
  private long created() {
    return clock.instant().getEpochSecond();
  }

  private ObjectNode models() {
    ObjectNode root = JSON.createObjectNode().put("object", "list");
    ArrayNode data = root.putArray("data");
    data.addObject().put("id", options.servedModelName()).put("object", "model").put("created", created).put("owned_by", "lorafleet")
        .put("root", modelDir.toAbsolutePath().normalize().toString()).putNull("parent");
    for (AdapterRegistry.Entry e : adapters.list()) {
      data.addObject().put("id", e.name()).put("object", "model").put("created", created).put("owned_by", "lorafleet")
          .put("root", e.dir().toString()).put("parent", options.servedModelName());
    }
    return root;
  }

  /** Prometheus' text format 0.0.4: requests answered, the queue, the batch, tokens and steps, and the adapters loaded. */
  private String metrics() {
    Scheduler.Stats st = scheduler.stats();
    StringBuilder sb = new StringBuilder();
    sb.append("# HELP lorafleet_serve_requests_total Requests answered, by endpoint and HTTP status.\n")
        .append("# TYPE lorafleet_serve_requests_total counter\n");
    answered.forEach((k, n) -> {
      int sp = k.lastIndexOf(' ');
      sb.append("lorafleet_serve_requests_total{endpoint=\"").append(k, 0, sp).append("\",status=\"").append(k.substring(sp + 1)).append("\"} ")
          .append(n.sum()).append('\n');
    });
    metric(sb, "queued_requests", "gauge", "Requests waiting for a row.", scheduler.queued());
    metric(sb, "running_requests", "gauge", "Requests being decoded.", scheduler.active());
    metric(sb, "adapters_loaded", "gauge", "Adapters loaded besides the base.", adapters.list().size());
    metric(sb, "generated_tokens_total", "counter", "Tokens generated.", st.tokens());
    metric(sb, "decode_steps_total", "counter", "Decode steps run.", st.steps());
    metric(sb, "mixed_adapter_steps_total", "counter", "Decode steps whose batch mixed adapters.", st.mixedSteps());
    metric(sb, "kv_tokens_limit", "gauge", "KV-cache positions the server may hold (--max-kv-tokens).", scheduler.kvTokens());
    metric(sb, "kv_tokens_reserved", "gauge", "KV-cache positions reserved by the requests running and waiting.", scheduler.reservedKvTokens());
    metric(sb, "kv_cache_tokens", "gauge", "KV-cache positions the running batch holds, padding included.", scheduler.cacheTokens());
    metric(sb, "client_disconnects_total", "counter", "Clients that closed the connection before their generation ended.", disconnects());
    return sb.toString();
  }

  private static void metric(StringBuilder sb, String name, String type, String help, long value) {
    sb.append("# HELP lorafleet_serve_").append(name).append(' ').append(help).append('\n')
        .append("# TYPE lorafleet_serve_").append(name).append(' ').append(type).append('\n')
        .append("lorafleet_serve_").append(name).append(' ').append(value).append('\n');
  }

  private void authorize(Request req) {
    if (options.apiKey().isEmpty()) {
      return;
    }
    String h = req.getHeaders().get(HttpHeader.AUTHORIZATION);
    byte[] want = ("Bearer " + options.apiKey().get()).getBytes(StandardCharsets.UTF_8);
    if (h == null || !MessageDigest.isEqual(want, h.getBytes(StandardCharsets.UTF_8))) {
      throw new ApiError(401, "authentication_error", Optional.empty(), h == null ? "missing Authorization: Bearer <key> header"
          : "invalid API key");
    }
  }

  private static void allow(String method, String allowed) {
    if (!method.equals(allowed)) {
      throw new ApiError(405, "invalid_request_error", Optional.empty(), "method " + method + " is not allowed here; use " + allowed);
    }
  }

  private static JsonNode body(Request req) {
    long declared = req.getLength();
    if (declared > MAX_BODY) {
      throw new ApiError(413, "invalid_request_error", Optional.empty(), "the request body has " + declared + " bytes; at most " + MAX_BODY
          + " are accepted");
    }
    byte[] bytes;
    try {
      bytes = Content.Source.asByteArrayAsync(req, MAX_BODY).get();
    } catch (ExecutionException e) {
      throw new ApiError(413, "invalid_request_error", Optional.empty(), "the request body could not be read whole within " + MAX_BODY
          + " bytes (it is longer, or the client stopped sending it)");
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new ApiError(503, "service_unavailable", Optional.empty(), "interrupted");
    }
    return StrictJson.parse(bytes);
  }

  /** The body as an object with only {@code fields}. */
  private static ObjectNode object(JsonNode body, String... fields) {
    if (!(body instanceof ObjectNode o)) {
      throw ApiError.invalid("body", "the request body must be a JSON object");
    }
    for (Iterator<String> it = o.fieldNames(); it.hasNext();) {
      String f = it.next();
      if (!java.util.Arrays.asList(fields).contains(f)) {
        throw ApiError.invalid(f, "Unrecognized request argument supplied: " + f + " (expected " + String.join(", ", fields) + ")");
      }
    }
    return o;
  }

  private static String required(ObjectNode o, String f) {
    if (!o.path(f).isTextual() || o.get(f).asText().isBlank()) {
      throw ApiError.invalid(f, "'" + f + "' must be a non-empty string but found " + (o.has(f) ? o.get(f) : "nothing"));
    }
    return o.get(f).asText();
  }

  private static void send(Response res, Callback cb, int status, JsonNode body) {
    res.setStatus(status);
    res.getHeaders().put(HttpHeader.CONTENT_TYPE, "application/json");
    try {
      Content.Sink.write(res, true, JSON.writeValueAsString(body), cb);
    } catch (IOException e) {
      cb.failed(e);
    }
  }

  private static void sendText(Response res, Callback cb, String text) {
    res.setStatus(200);
    res.getHeaders().put(HttpHeader.CONTENT_TYPE, "text/plain; charset=utf-8");
    Content.Sink.write(res, true, text, cb);
  }

  private static void sendError(Response res, Callback cb, ApiError e) {
    if (res.isCommitted()) {
      cb.failed(e);
      return;
    }
    if (e.status() == 429) {
      res.getHeaders().put(HttpHeader.RETRY_AFTER, "1");
    }
    if (e.status() == 401) {
      res.getHeaders().put(HttpHeader.WWW_AUTHENTICATE, "Bearer");
    }
    send(res, cb, e.status(), e.body(JSON));
  }
}
