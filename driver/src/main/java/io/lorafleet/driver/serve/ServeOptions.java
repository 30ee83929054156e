package io.lorafleet.driver.serve;

import java.nio.file.Path;
import java.time.Duration;
import java.util.Optional;
import java.util.OptionalInt;
import java.util.OptionalLong;

/**
 * How {@code lorafleet serve} runs, built by name ({@link #builder}). Every limit that bounds the
 * server's memory and connections is here, so that the worst case is a function of these flags and
 * the model, never of what a request asks (README, "serve under load").
 *
 * @param host address to bind (127.0.0.1 unless told otherwise)
 * @param port port to bind (0: any free one)
 * @param apiKey when present, every /v1 request needs {@code Authorization: Bearer <key>}
 * @param adapterRoot when present, load_lora_adapter may read adapters under it, and nowhere else
 * @param servedModelName the base model's name in requests and /v1/models
 * @param maxBatch rows decoded together
 * @param maxQueue requests waiting for a row before 429
 * @param requestTimeout how long a request may wait and run in all
 * @param maxModelLen tokens of prompt plus completion one request may reach (vLLM's --max-model-len);
 *     empty: the model's max_position_embeddings
 * @param maxKvTokens KV-cache positions that the requests running and waiting may reserve together
 *     (prompt plus max_tokens each), and that the running batch's cache may hold, padding included;
 *     empty: {@link #DEFAULT_KV_BATCHES} full batches at the full context
 * @param maxConnections connections served at once; as many more wait in the accept backlog
 */
public record ServeOptions(String host, int port, Optional<String> apiKey, Optional<Path> adapterRoot, String servedModelName, int maxBatch,
    int maxQueue, Duration requestTimeout, OptionalInt maxModelLen, OptionalLong maxKvTokens, int maxConnections) {
  public static final String DEFAULT_HOST = "127.0.0.1";
  public static final int DEFAULT_PORT = 8000;
  public static final int DEFAULT_MAX_BATCH = 16;
  public static final int DEFAULT_MAX_QUEUE = 256;
  public static final int DEFAULT_REQUEST_TIMEOUT_S = 600;
  public static final int DEFAULT_MAX_CONNECTIONS = 1024;
  /** The default KV budget in full batches at the full context: one decoding, one's worth waiting. */
  public static final int DEFAULT_KV_BATCHES = 2;
  /**
   * Connections a server needs besides its queue and batch, which hold one each while they wait:
   * room for the requests it answers at once (429, 4xx, /health, /metrics) meanwhile.
   */
  static final int CONNECTION_HEADROOM = 64;

  public ServeOptions {
    if (port < 0 || port > 65535) {
      throw new IllegalArgumentException("--port must be in [0, 65535] but found " + port);
    }
    if (maxBatch < 1) {
      throw new IllegalArgumentException("--max-batch must be >= 1 but found " + maxBatch);
    }
    if (maxQueue < 1) {
      throw new IllegalArgumentException("--max-queue must be >= 1 but found " + maxQueue);
    }
    if (requestTimeout.isNegative() || requestTimeout.isZero()) {
      throw new IllegalArgumentException("--request-timeout must be > 0 seconds but found " + requestTimeout.toSeconds());
    }
    if (servedModelName.isBlank()) {
      throw new IllegalArgumentException("--served-model-name must not be blank");
    }
    if (apiKey.isPresent() && apiKey.get().isBlank()) {
      throw new IllegalArgumentException("--api-key must not be blank");
    }
    if (maxModelLen.isPresent() && maxModelLen.getAsInt() < 2) {
      throw new IllegalArgumentException("--max-model-len must be >= 2 (a prompt token and a completion token) but found "
          + maxModelLen.getAsInt());
    }
    if (maxKvTokens.isPresent() && maxKvTokens.getAsLong() < 2) {
      throw new IllegalArgumentException("--max-kv-tokens must be >= 2 but found " + maxKvTokens.getAsLong());
    }
    long held = (long) maxQueue + maxBatch + CONNECTION_HEADROOM;
    if (maxConnections < held) {
      throw new IllegalArgumentException("--max-connections must be at least --max-queue + --max-batch + " + CONNECTION_HEADROOM + " = " + held
          + " (every queued and running request holds a connection) but found " + maxConnections);
    }
  }

  /** Options with every default, serving the base under {@code servedModelName}. */
  public static Builder builder(String servedModelName) {
    return new Builder(servedModelName);
  }

  /**
   * The most tokens (prompt plus completion) a request may reach on a model with
   * {@code maxPositions} positions: --max-model-len, which may not exceed it, or all of them.
   */
  public int context(int maxPositions) {
    if (maxModelLen.isPresent() && maxModelLen.getAsInt() > maxPositions) {
      throw new IllegalArgumentException("--max-model-len " + maxModelLen.getAsInt() + " exceeds the model's context of " + maxPositions
          + " positions (max_position_embeddings); give at most " + maxPositions);
    }
    return maxModelLen.orElse(maxPositions);
  }

  /** The KV budget for requests of at most {@code context} tokens; at least one request at the full context must fit it. */
  public long kvTokens(int context) {
    long kv = maxKvTokens.orElse(fullBatches(context));
    if (kv < context) {
      throw new IllegalArgumentException("--max-kv-tokens " + kv + " is smaller than one request at the full context (" + context
          + " tokens, --max-model-len): such a request could never run; give at least " + context);
    }
    return kv;
  }

  /** {@link #DEFAULT_KV_BATCHES} batches at the full context, in exact arithmetic (Long.MAX_VALUE past it). */
  private long fullBatches(int context) {
    try {
      return Math.multiplyExact(Math.multiplyExact((long) DEFAULT_KV_BATCHES, maxBatch), context);
    } catch (ArithmeticException e) {
      return Long.MAX_VALUE;
    }
  }

  /** Named settings with the defaults above; {@link #build} checks them all. */
  public static final class Builder {
    private String host = DEFAULT_HOST;
    private int port = DEFAULT_PORT;
    private Optional<String> apiKey = Optional.empty();
    private Optional<Path> adapterRoot = Optional.empty();
    private final String servedModelName;
    private int maxBatch = DEFAULT_MAX_BATCH;
    private int maxQueue = DEFAULT_MAX_QUEUE;
    private Duration requestTimeout = Duration.ofSeconds(DEFAULT_REQUEST_TIMEOUT_S);
    private OptionalInt maxModelLen = OptionalInt.empty();
    private OptionalLong maxKvTokens = OptionalLong.empty();
    private int maxConnections = DEFAULT_MAX_CONNECTIONS;

    private Builder(String servedModelName) {
      this.servedModelName = servedModelName;
    }

    public Builder host(String v) {
      host = v;
      return this;
    }

    public Builder port(int v) {
      port = v;
      return this;
    }

    public Builder apiKey(String v) {
      apiKey = Optional.of(v);
      return this;
    }

    public Builder adapterRoot(Path v) {
      adapterRoot = Optional.of(v);
      return this;
    }

    public Builder maxBatch(int v) {
      maxBatch = v;
      return this;
    }

    public Builder maxQueue(int v) {
      maxQueue = v;
      return this;
    }

    public Builder requestTimeout(Duration v) {
      requestTimeout = v;
      return this;
    }

    public Builder maxModelLen(int v) {
      maxModelLen = OptionalInt.of(v);
      return this;
    }

    public Builder maxKvTokens(long v) {
      maxKvTokens = OptionalLong.of(v);
      return this;
    }

    public Builder maxConnections(int v) {
      maxConnections = v;
      return this;
    }

    public ServeOptions build() {
      return new ServeOptions(host, port, apiKey, adapterRoot, servedModelName, maxBatch, maxQueue, requestTimeout, maxModelLen, maxKvTokens,
          maxConnections);
    }
  }
}
