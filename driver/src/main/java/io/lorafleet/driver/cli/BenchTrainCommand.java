package io.lorafleet.driver.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.datasets.prepare.Prepare;
import io.lorafleet.datasets.prepare.PrepareOptions;
import io.lorafleet.datasets.prepare.RecordFormat;
import io.lorafleet.driver.train.TrainConfig;
import io.lorafleet.driver.train.Trainer;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.TinyModelSpec;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "bench-train", mixinStandardHelpOptions = true,
    description = "Benchmark distributed steps: 1 worker against N on the same global batch; communication share of step time, bytes per step against adapter size.")
final class BenchTrainCommand implements Callable<Integer> {
  @Option(names = "--out", description = "the benchmark's directory (replaced on every run)", defaultValue = "lorafleet-bench") Path out;
  @Option(names = "--hidden", description = "hidden size of the benchmark model", defaultValue = "256") int hidden;
  @Option(names = "--layers", description = "decoder layers", defaultValue = "4") int layers;
  @Option(names = "--intermediate", description = "MLP intermediate size", defaultValue = "688") int intermediate;
  @Option(names = "--vocab", description = "vocabulary size", defaultValue = "4096") int vocab;
  @Option(names = "--seq-len", description = "tokens per example", defaultValue = "128") int seqLen;
  @Option(names = "--global-batch", description = "examples per step", defaultValue = "8") int globalBatch;
  @Option(names = "--r", description = "LoRA rank", defaultValue = "16") int rank;
  @Option(names = "--workers", description = "workers of the distributed run (compared with 1)", defaultValue = "2") int workers;
  @Option(names = "--steps", description = "steps per run (the first 2 are left out of the timing)", defaultValue = "12") int steps;
  @Option(names = "--warmup-steps", defaultValue = "2", description = "steps left out of the averages") int warmup;

  @Override
  public Integer call() throws Exception {
    Files.createDirectories(out);
    Path model = out.resolve("model");
    List<String> words = new ArrayList<>();
    for (int i = 0; i < vocab - 4; i++) {
      words.add("w" + i);
    }
    ModelDirectory.initModel(model, new TinyModelSpec("llama", layers, hidden, hidden / 64, hidden / 64, intermediate, 1, Math.max(512, seqLen), false), words, 1);
    Random r = new Random(2);
    StringBuilder sb = new StringBuilder();
    ObjectMapper json = new ObjectMapper();
    for (int i = 0; i < globalBatch * 4; i++) {
      StringBuilder text = new StringBuilder();
      for (int k = 0; k < seqLen - 2; k++) {
        text.append(k == 0 ? "" : " ").append(words.get(r.nextInt(words.size())));
      }
      sb.append(json.writeValueAsString(Map.of("text", text.toString()))).append('\n');
    }
    Files.writeString(out.resolve("text.jsonl"), sb);
    var spark = Spark.session("bench-train", workers);
    ObjectNode report = json.createObjectNode();
    try {
      Prepare.run(spark, PrepareOptions.builder(List.of(out.resolve("text.jsonl").toString()), model.toString(), out.resolve("data").toString())
          .inputType("jsonl").format(RecordFormat.TEXT).maxSeqLen(seqLen).truncation("drop").shards(4).maxBadFraction(0).overwrite(true)
          .build());
      report.put("model", "llama H" + hidden + " L" + layers + " FFN" + intermediate + " V" + vocab);
      report.put("global_batch", globalBatch + "x" + seqLen);
      report.put("master", spark.sparkContext().master());
      for (int n : new int[] {1, workers}) {
        TrainConfig cfg = TrainConfig.builder(model.toString(), out.resolve("data").toString(), out.resolve("run-" + n).toString())
            .tuner(LoraConfig.ofTargetModules(rank, 2.0 * rank, TrainConfig.DEFAULT_TARGETS))
            .workers(n).steps(steps).globalBatch(globalBatch).microBatch(Math.max(1, globalBatch / n)).lr(1e-3).schedule("constant")
            .checkpointEvery(1_000_000).keepCheckpoints(1).timeoutMs(300_000).maxAttempts(1)
            .overwrite(true) // the benchmark owns its runs
            .build();
        var res = Trainer.run(spark, cfg, false);
        report.set("workers_" + n, summarize(out.resolve("run-" + n).resolve("metrics.jsonl"), warmup, res.adapter().length * 4L));
      }
    } finally {
      spark.stop();
    }
    double t1 = report.at("/workers_1/step_ms").asDouble();
    double tn = report.at("/workers_" + workers + "/step_ms").asDouble();
    report.put("step_time_" + workers + "_vs_1", tn / t1);
    String text = new ObjectMapper().writerWithDefaultPrettyPrinter().writeValueAsString(report);
    Files.writeString(out.resolve("bench.json"), text);
    System.out.println(text);
    return 0;
  }

  /** Means over the steps after warm-up, from metrics.jsonl. */
  static ObjectNode summarize(Path metrics, int warmup, long adapterBytes) throws Exception {
    ObjectMapper json = new ObjectMapper();
    List<JsonNode> rows = new ArrayList<>();
    for (String line : Files.readAllLines(metrics)) {
      rows.add(json.readTree(line));
    }
    List<JsonNode> use = rows.subList(Math.min(warmup, rows.size() - 1), rows.size());
    ObjectNode s = json.createObjectNode();
    for (String f : List.of("step_ms", "compute_ms", "communication_ms", "optimizer_ms", "bytes", "tokens")) {
      s.put(f, use.stream().mapToDouble(n -> n.get(f).asDouble()).average().orElse(Double.NaN));
    }
    s.put("communication_fraction", s.get("communication_ms").asDouble() / s.get("step_ms").asDouble());
    s.put("adapter_bytes", adapterBytes);
    s.put("bytes_per_step_over_adapter", s.get("bytes").asDouble() / adapterBytes);
    s.put("tokens_per_s", s.get("tokens").asDouble() / (s.get("step_ms").asDouble() / 1000));
    s.put("steps_averaged", use.size());
    return s;
  }
}
