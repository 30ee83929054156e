package io.lorafleet.driver.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.datasets.prepare.Prepare;
import io.lorafleet.datasets.prepare.PrepareOptions;
import io.lorafleet.datasets.prepare.RecordFormat;
import io.lorafleet.driver.demo.SqlTask;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.TinyModelSpec;
import java.io.BufferedWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "bench-prepare", mixinStandardHelpOptions = true,
    description = "Benchmark prepare: records/s and tokens/s on a generated JSONL dataset (default 200k context-target records).")
final class BenchPrepareCommand implements Callable<Integer> {
  @Option(names = "--out", description = "the benchmark's directory (replaced on every run)", defaultValue = "lorafleet-bench-prepare") Path out;
  @Option(names = "--records", description = "generated records", defaultValue = "200000") int records;
  @Option(names = "--files", defaultValue = "4", description = "input files the records are spread over") int files;
  @Option(names = "--shards", description = "shards per split", defaultValue = "8") int shards;
  @Option(names = "--local-threads", description = "local Spark threads", defaultValue = "2") int threads;

  @Override
  public Integer call() throws Exception {
    Files.createDirectories(out.resolve("input"));
    Path model = out.resolve("model");
    ModelDirectory.initModel(model, new TinyModelSpec("llama", 1, 16, 2, 2, 16, 1, 128, false), SqlTask.vocabulary(), 1);
    ObjectMapper json = new ObjectMapper();
    List<SqlTask.Pair> pairs = SqlTask.generate(records, 7);
    for (int f = 0; f < files; f++) {
      try (BufferedWriter w = Files.newBufferedWriter(out.resolve("input/part-" + f + ".jsonl"))) {
        for (int i = f; i < pairs.size(); i += files) {
          w.write(json.writeValueAsString(Map.of("context", "question : " + pairs.get(i).question() + " sql :", "target", pairs.get(i).sql())));
          w.newLine();
        }
      }
    }
    var spark = Spark.session("bench-prepare", threads);
    ObjectNode report = json.createObjectNode();
    try {
      long t0 = System.nanoTime();
      var m = Prepare.run(spark, PrepareOptions.builder(List.of(out.resolve("input").toString()), model.toString(), out.resolve("prepared").toString())
          .inputType("jsonl").maxSeqLen(64).truncation("drop").valFraction(0.01).shards(shards).maxBadFraction(0.01).overwrite(true)
          .build());
      double sec = (System.nanoTime() - t0) / 1e9;
      long recs = m.at("/splits/train/records").asLong() + m.at("/splits/validation/records").asLong();
      long toks = m.at("/splits/train/tokens").asLong() + m.at("/splits/validation/tokens").asLong();
      report.put("master", spark.sparkContext().master());
      report.put("records", recs);
      report.put("tokens", toks);
      report.put("seconds", sec);
      report.put("records_per_s", recs / sec);
      report.put("tokens_per_s", toks / sec);
      report.put("quarantined", m.get("records_quarantined").asLong());
    } finally {
      spark.stop();
    }
    System.out.println(json.writerWithDefaultPrettyPrinter().writeValueAsString(report));
    return 0;
  }
}
