package io.lorafleet.driver.serve;

import java.nio.file.Path;
import java.time.Duration;
import java.util.Optional;

/**
 * How {@code lorafleet serve} runs.
 *
 * @param host address to bind (127.0.0.1 unless told otherwise)
 * @param port port to bind (0: any free one)
 * @param apiKey when present, every /v1 request needs {@code Authorization: Bearer <key>}
 * @param adapterRoot when present, load_lora_adapter may read adapters under it, and nowhere else
 * @param servedModelName the base model's name in requests and /v1/models
 * @param maxBatch rows decoded together
 * @param maxQueue requests waiting for a row before 429
 * @param requestTimeout how long a request may wait and run in all
 */
public record ServeOptions(String host, int port, Optional<String> apiKey, Optional<Path> adapterRoot, String servedModelName, int maxBatch,
    int maxQueue, Duration requestTimeout) {
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
  }
}
