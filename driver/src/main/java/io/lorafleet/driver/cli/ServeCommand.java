package io.lorafleet.driver.cli;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.driver.report.Progress;
import io.lorafleet.driver.serve.ApiServer;
import io.lorafleet.driver.serve.ServeOptions;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.tokenizer.Tokenizer;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "serve", mixinStandardHelpOptions = true, description = "Serve the base model and many LoRA adapters over an OpenAI-compatible HTTP "
    + "API (/v1/completions, /v1/chat/completions with stream, /v1/models, /v1/load_lora_adapter, /v1/unload_lora_adapter): requests name an "
    + "adapter or the base in 'model', and requests of different adapters share forward passes (continuous batching). SIGTERM or Ctrl-C drains "
    + "the requests in flight, then exits.")
final class ServeCommand implements Callable<Integer> {
  @Option(names = "--model", description = "base model directory", required = true) Path model;
  @Option(names = "--adapter", paramLabel = "[NAME=]DIR", description = "an adapter to serve from the start, optionally named (default name: the "
      + "directory's); repeatable") List<String> adapters = new ArrayList<>();
  @Option(names = "--host", description = "address to bind; 0.0.0.0 exposes the server to the network (default: " + ServeOptions.DEFAULT_HOST + ")")
  String host;
  @Option(names = "--port", description = "port to bind (0: any free one, printed at start; default: " + ServeOptions.DEFAULT_PORT + ")") Integer port;
  @Option(names = "--api-key", description = "require 'Authorization: Bearer KEY' on /v1 requests (default: $LORAFLEET_API_KEY, else none)",
      defaultValue = "${env:LORAFLEET_API_KEY}") String apiKey;
  @Option(names = "--adapter-root", description = "load_lora_adapter reads adapters under this directory only (symbolic links resolved); "
      + "without it, loading at run time is off") Path adapterRoot;
  @Option(names = "--served-model-name", description = "the base model's name in requests and /v1/models (default: the model directory's name)")
  String servedModelName;
  @Option(names = "--max-batch", description = "rows decoded together (default: " + ServeOptions.DEFAULT_MAX_BATCH + ")") Integer maxBatch;
  @Option(names = "--max-queue", description = "requests waiting for a row before new ones get 429 (default: " + ServeOptions.DEFAULT_MAX_QUEUE
      + ")") Integer maxQueue;
  @Option(names = "--request-timeout", description = "seconds a request may wait and run in all before it ends with 408 (default: "
      + ServeOptions.DEFAULT_REQUEST_TIMEOUT_S + ")") Long requestTimeout;
  @Option(names = "--max-model-len", description = "tokens of prompt plus completion one request may reach, as vLLM's flag (default: the "
      + "model's max_position_embeddings; at most that)") Integer maxModelLen;
  @Option(names = "--max-kv-tokens", description = "KV-cache positions the requests running and waiting may reserve together (prompt plus "
      + "max_tokens each; past it 429), and that the running batch's cache may hold, padding included (default: "
      + ServeOptions.DEFAULT_KV_BATCHES + " x --max-batch x --max-model-len)") Long maxKvTokens;
  @Option(names = "--max-connections", description = "connections served at once; as many more wait in the accept backlog (default: "
      + ServeOptions.DEFAULT_MAX_CONNECTIONS + "; at least --max-queue + --max-batch + 64)") Integer maxConnections;
  @Option(names = "--drain-timeout", description = "seconds a shutdown waits for requests in flight", defaultValue = "60") long drainTimeout;
  @picocli.CommandLine.Mixin QuantizeOptions quantize;

  @Override
  public Integer call() throws Exception {
    Map<String, Path> named = GenerateCommand.named(adapters);
    ServeOptions.Builder b = ServeOptions.builder(servedModelName != null ? servedModelName
        : model.toAbsolutePath().normalize().getFileName().toString());
    Optional.ofNullable(host).ifPresent(b::host);
    Optional.ofNullable(port).ifPresent(b::port);
    Optional.ofNullable(apiKey).filter(k -> !k.isEmpty()).ifPresent(b::apiKey);
    Optional.ofNullable(adapterRoot).ifPresent(b::adapterRoot);
    Optional.ofNullable(maxBatch).ifPresent(b::maxBatch);
    Optional.ofNullable(maxQueue).ifPresent(b::maxQueue);
    Optional.ofNullable(requestTimeout).map(Duration::ofSeconds).ifPresent(b::requestTimeout);
    Optional.ofNullable(maxModelLen).ifPresent(b::maxModelLen);
    Optional.ofNullable(maxKvTokens).ifPresent(b::maxKvTokens);
    Optional.ofNullable(maxConnections).ifPresent(b::maxConnections);
    ServeOptions o = b.build();
    try (LanguageModel base = LanguageModel.load(model, Device.cpu(), DataType.FLOAT32, quantize.quantization()); Tokenizer tok = Tokenizer.load(model)) {
      ApiServer server = ApiServer.start(o, base, tok, model, named, Clock.systemUTC());
      CountDownLatch stopped = new CountDownLatch(1);
      Thread hook = new Thread(() -> {
        Progress.say("draining requests in flight (at most " + drainTimeout + " s)");
        try {
          boolean all = server.shutdown(Duration.ofSeconds(drainTimeout));
          Progress.say(all ? "stopped; every request in flight finished" : "stopped; some requests did not finish within --drain-timeout");
        } catch (Exception e) {
          server.close();
        } finally {
          stopped.countDown();
        }
      }, "lorafleet-serve-shutdown");
      Runtime.getRuntime().addShutdownHook(hook);
      Progress.say("serving " + o.servedModelName() + " and " + named.size() + " adapter(s) on http://" + o.host() + ":" + server.port() + "/v1"
          + (o.apiKey().isPresent() ? " (API key required)" : ""));
      stopped.await();
    }
    return 0;
  }
}
