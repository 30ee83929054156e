package io.lorafleet.driver.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.lorafleet.driver.bench.ServeBenchmark;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "bench-serve", mixinStandardHelpOptions = true, description = "Serve latency over real HTTP: a server over a random base with "
    + "N random adapters, C closed-loop streaming clients cycling through the adapters and the base; p50/p99 latency and time to first token, "
    + "tokens/s, against the same load with one row per batch. With --flood, CLIENTS clients at once asking for max_tokens at the cap "
    + "until served (429s retried after Retry-After): answers by status, latency, peak RSS and the KV cache against its budget.")
final class BenchServeCommand implements Callable<Integer> {
  @Option(names = "--hidden", description = "hidden size of the benchmark model", defaultValue = "512") int hidden;
  @Option(names = "--layers", description = "decoder layers", defaultValue = "4") int layers;
  @Option(names = "--intermediate", description = "MLP intermediate size", defaultValue = "1376") int intermediate;
  @Option(names = "--vocab", description = "vocabulary size", defaultValue = "8192") int vocab;
  @Option(names = "--adapters", description = "random adapters (r --r, all-linear) served besides the base", defaultValue = "8") int adapters;
  @Option(names = "--r", description = "LoRA rank", defaultValue = "16") int rank;
  @Option(names = "--concurrency", description = "clients, each with one request in flight", defaultValue = "16") int concurrency;
  @Option(names = "--requests", description = "measured requests (after one warm-up request per client)", defaultValue = "128") int requests;
  @Option(names = "--prompt-tokens", description = "tokens per prompt", defaultValue = "32") int promptTokens;
  @Option(names = "--max-tokens", description = "tokens to generate per request", defaultValue = "32") int maxTokens;
  @Option(names = "--max-batch", description = "rows decoded together", defaultValue = "16") int maxBatch;
  @Option(names = "--flood", paramLabel = "CLIENTS", description = "flood the server instead: CLIENTS clients at once, each asking for "
      + "all the context its prompt leaves, not streamed, retrying 429s after Retry-After until served") Integer flood;
  @Option(names = "--seed", description = "seed of the model, adapters and prompts", defaultValue = "0") long seed;

  @Override
  public Integer call() throws Exception {
    ServeBenchmark.Load load = flood == null ? ServeBenchmark::run : ServeBenchmark::flood;
    var res = ServeBenchmark.runInTemp(load, new ServeBenchmark.Settings(hidden, layers, intermediate, vocab, adapters, rank,
        flood == null ? concurrency : flood, requests, promptTokens, maxTokens, maxBatch, seed));
    System.out.println(new ObjectMapper().writerWithDefaultPrettyPrinter().writeValueAsString(res));
    return 0;
  }
}
