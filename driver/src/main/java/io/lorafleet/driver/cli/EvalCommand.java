package io.lorafleet.driver.cli;

import io.lorafleet.datasets.fs.HadoopConf;
import io.lorafleet.driver.checkpoint.RunFiles;
import io.lorafleet.driver.checkpoint.RunOutput;
import io.lorafleet.driver.eval.RunEvaluation;
import io.lorafleet.driver.eval.Scores;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "eval", mixinStandardHelpOptions = true,
    description = "Evaluate the base, adapters, or every checkpoint of a run on a prepared split (loss, perplexity, greedy exact match), on Spark.")
final class EvalCommand implements Callable<Integer> {
  @Option(names = "--model", required = true, description = "base model directory (or a merged model)") String model;
  @Option(names = "--data", required = true, description = "a directory written by lorafleet prepare") String data;
  @Option(names = "--split", description = "the split of --data to evaluate", defaultValue = "validation") String split;
  @Option(names = "--adapter", description = "adapter directories to compare with the base") List<String> adapters = new ArrayList<>();
  @Option(names = "--run", description = "a train output directory: evaluate every checkpoint, averaged/, ema/, bema/, best/ and adapter/") String run;
  @Option(names = "--limit", defaultValue = "1000", description = "at most this many examples") int limit;
  @Option(names = "--partitions", description = "Spark partitions (parallel evaluation tasks)", defaultValue = "2") int partitions;
  @Option(names = "--out", description = "directory for eval.json and eval_loss.svg", defaultValue = "eval") String out;
  @Option(names = "--overwrite", description = "replace what --out holds (otherwise an output that holds files is refused)") boolean overwrite;
  @picocli.CommandLine.Mixin QuantizeOptions quantize;
  @picocli.CommandLine.Mixin LabelOptions labelOptions = new LabelOptions();
  @Option(names = "--local-threads", description = "local[N] when not under spark-submit (default: --partitions)") Integer localThreads;
  @Option(names = "--spark-conf", description = "a Spark conf key=value (repeatable)") java.util.Map<String, String> sparkConf = new java.util.LinkedHashMap<>();
  @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

  /** The base as the run trained over it: --quantize when given, else what the run's train_config.yaml records. */
  private io.lorafleet.worker.quant.Quantization quantization() throws java.io.IOException {
    if (run == null || spec.commandLine().getParseResult().hasMatchedOption("--quantize")) {
      return quantize.quantization();
    }
    return io.lorafleet.driver.train.ResolvedConfig.quantization(run, HadoopConf.current()).orElse(quantize.quantization());
  }

  /** A classifier's labels: the flags', else those its adapters were trained for (which must agree), else the base's config.json's. */
  private io.lorafleet.worker.model.Labels labels(List<RunEvaluation.Row> todo) {
    var given = labelOptions.labels();
    if (!given.fromConfig()) {
      return given;
    }
    java.util.Map<io.lorafleet.worker.model.Labels, String> seen = new java.util.LinkedHashMap<>();
    for (RunEvaluation.Row r : todo) {
      r.adapter().ifPresent(a -> {
        var l = io.lorafleet.worker.lora.AdapterFormat.labels(io.lorafleet.datasets.fs.NodeCopy.of(a, io.lorafleet.datasets.fs.NodeCopy.Kind.ADAPTER));
        if (!l.fromConfig()) {
          seen.putIfAbsent(l, a);
        }
      });
    }
    if (seen.size() > 1) {
      var it = seen.entrySet().iterator();
      var a = it.next();
      var b = it.next();
      throw new IllegalArgumentException(a.getValue() + " was trained for " + a.getKey().describe() + " but " + b.getValue() + " for "
          + b.getKey().describe() + "; evaluate them apart");
    }
    return seen.keySet().stream().findFirst().orElse(given);
  }

  private List<String> inputs() {
    List<String> in = new ArrayList<>(adapters);
    in.add(model);
    in.add(data);
    if (run != null) {
      in.add(run);
    }
    return in;
  }

  @Override
  public Integer call() throws Exception {
    RunOutput ro = Outputs.claim(out, overwrite, inputs());
    List<RunEvaluation.Row> todo = new ArrayList<>();
    if (run != null) {
      todo.addAll(RunEvaluation.runCandidates(run, HadoopConf.current()));
    } else {
      todo.add(new RunEvaluation.Row("base", 0, Optional.empty(), Scores.ZERO));
    }
    for (String a : adapters) {
      todo.add(new RunEvaluation.Row(new org.apache.hadoop.fs.Path(a).getName(), -1, Optional.of(a), Scores.ZERO));
    }
    String splitDir = data + (data.endsWith("/") ? "" : "/") + split;
    if (RunFiles.directory(data, split, HadoopConf.current()).isEmpty()) {
      throw new IllegalArgumentException("--data " + data + ": no split '" + split + "' (expected " + splitDir + ")");
    }
    var spark = Spark.session("eval", localThreads == null ? partitions : localThreads, sparkConf);
    try {
      var labels = labels(todo);
      var rows = RunEvaluation.candidates(spark, model, quantization(), labels, todo, splitDir, partitions, limit);
      System.out.print(RunEvaluation.write(ro.local(), rows));
      var base = io.lorafleet.driver.executor.ModelCache.skeleton(model, HadoopConf.current(), labels).untrainedHead();
      if (!base.isEmpty() && rows.stream().anyMatch(r -> r.label().equals("base"))) {
        System.out.println("base: " + model + " holds no trained classification head (" + String.join(", ", base) + " initialized as transformers "
            + "initializes a missing head): its scores are chance level, not the pretrained model's");
      }
      ro.publishAll();
      System.out.println("wrote " + ro.uri() + "/eval.json and eval_loss.svg");
    } finally {
      spark.stop();
    }
    return 0;
  }
}
