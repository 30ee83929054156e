package io.lorafleet.driver.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.datasets.fs.HadoopConf;
import io.lorafleet.datasets.fs.NodeCopy;
import io.lorafleet.driver.average.AdapterAverager;
import io.lorafleet.driver.average.Soup;
import io.lorafleet.driver.checkpoint.RunFiles;
import io.lorafleet.driver.checkpoint.RunOutput;
import io.lorafleet.driver.eval.RunEvaluation;
import io.lorafleet.driver.eval.Scores;
import io.lorafleet.driver.train.ResolvedConfig;
import io.lorafleet.driver.train.TrainConfig;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.model.ModelSkeleton;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Optional;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "soup", mixinStandardHelpOptions = true, description = "Model soups of a multi-run job's adapters: evaluate every run's adapter "
    + "in one mixed-adapter pass, then write the uniform soup and the greedy soup (add each run, best first, only if the held-out metric does "
    + "not get worse) as PEFT adapters refactored to --rank, with a table of every run and both soups.")
final class SoupCommand implements Callable<Integer> {
  private static final ObjectMapper JSON = new ObjectMapper();

  @Option(names = "--runs", required = true, description = "a multi-run train output (its runs/<name>/ directories)") String runs;
  @Option(names = "--metric", defaultValue = "loss", description = "the held-out metric the soups are chosen by: loss, perplexity, exact_match, "
      + "accuracy, f1, matthews or pearson (default: loss)") String metric;
  @Option(names = "--split", defaultValue = "validation", description = "the split of --data the metric is measured on (default: validation)") String split;
  @Option(names = "--data", description = "a prepared dataset (default: the runs' own, when they share one)") String data;
  @Option(names = "--model", description = "the base model (default: the runs' own)") String model;
  @Option(names = "--use", defaultValue = "adapter", description = "each run's adapter/ (its final adapter) or best/ (its best checkpoint by "
      + "--metric-for-best-model, where it kept one)") String use;
  @Option(names = "--rank", defaultValue = "0", description = "the soups' rank: each module's averaged update refactored by an exact truncated "
      + "SVD (default: the largest r of the runs)") int rank;
  @Option(names = "--limit", defaultValue = "1000", description = "at most this many held-out examples") int limit;
  @Option(names = "--partitions", defaultValue = "2", description = "Spark partitions (parallel evaluation tasks)") int partitions;
  @Option(names = "--out", required = true, description = "directory for greedy/ (the soup), uniform/ and soup.json") String out;
  @Option(names = "--overwrite", description = "replace what --out holds (otherwise an output that holds files is refused)") boolean overwrite;
  @Option(names = "--local-threads", description = "local[N] when not under spark-submit (default: --partitions)") Integer localThreads;
  @Option(names = "--spark-conf", description = "a Spark conf key=value (repeatable)") java.util.Map<String, String> sparkConf = new java.util.LinkedHashMap<>();

  /** A run that goes into the soups: its name, adapter directory and the base and data it trained on. */
  private record Run(String name, String adapter, String model, String data) {}

  @Override
  public Integer call() throws Exception {
    var sel = TrainConfig.Selection.of(metric, null, false, 0, 0);
    if (!sel.on()) {
      throw new IllegalArgumentException("--metric must be one of " + String.join(", ", TrainConfig.Selection.METRICS));
    }
    if (!use.equals("adapter") && !use.equals(RunFiles.BEST)) {
      throw new IllegalArgumentException("--use must be adapter or best but found '" + use + "'");
    }
    var conf = HadoopConf.current();
    List<Run> found = runs(conf);
    if (found.size() < 2) {
      throw new IllegalArgumentException("--runs " + runs + " holds " + found.size() + " run(s) with a " + use + "/ directory; a soup needs at least 2");
    }
    String base = model != null ? model : shared(found, Run::model, "--model");
    String on = data != null ? data : shared(found, Run::data, "--data");
    String splitDir = on.replaceAll("/+$", "") + "/" + split;
    if (RunFiles.directory(on, split, conf).isEmpty()) {
      throw new IllegalArgumentException("--data " + on + ": no split '" + split + "' (expected " + splitDir + ")");
    }
    RunOutput ro = Outputs.claim(out, overwrite, List.of(runs, base, on));
    Path work = ro.local();
    var labels = AdapterFormat.labels(NodeCopy.of(found.get(0).adapter(), NodeCopy.Kind.ADAPTER));
    ModelSkeleton skeleton = io.lorafleet.driver.executor.ModelCache.skeleton(base, conf, labels);
    var quantize = ResolvedConfig.quantization(runs.replaceAll("/+$", "") + "/runs/" + found.get(0).name(), conf)
        .orElse(io.lorafleet.worker.quant.Quantization.NONE);
    var spark = Spark.session("soup", localThreads == null ? partitions : localThreads, sparkConf);
    try {
      // every run's adapter in one mixed-adapter pass over the held-out rows
      List<RunEvaluation.Row> todo = new ArrayList<>();
      for (Run r : found) {
        todo.add(new RunEvaluation.Row(r.name(), -1, Optional.of(r.adapter()), Scores.ZERO));
      }
      List<RunEvaluation.Row> scored = RunEvaluation.candidates(spark, base, quantize, labels, todo, splitDir, partitions, limit);
      List<Soup.Ingredient> ingredients = new ArrayList<>();
      int r = rank;
      for (int i = 0; i < found.size(); i++) {
        AdapterFormat.Loaded a = AdapterFormat.read(NodeCopy.of(found.get(i).adapter(), NodeCopy.Kind.ADAPTER), skeleton);
        r = Math.max(r, rank > 0 ? rank : a.model().config().r());
        ingredients.add(new Soup.Ingredient(found.get(i).name(), a, sel.value(scored.get(i).scores())));
      }
      int soupRank = r;
      Soup.Scorer scorer = dir -> sel.value(RunEvaluation.candidates(spark, base, quantize, labels,
          List.of(new RunEvaluation.Row(dir.getFileName().toString(), -1, Optional.of(dir.toString()), Scores.ZERO)), splitDir, partitions, limit)
          .get(0).scores());
      AdapterAverager.Result uniform = Soup.uniform(skeleton, ingredients, soupRank);
      AdapterFormat.write(work.resolve("uniform"), uniform.model(), uniform.values(), uniform.metadata());
      double uniformMetric = scorer.score(work.resolve("uniform"));
      Path tries = work.resolve(".greedy-tries");
      Soup.Greedy greedy = Soup.greedy(skeleton, ingredients, sel.greaterIsBetter(), soupRank, tries, scorer);
      AdapterFormat.write(work.resolve("greedy"), greedy.soup().model(), greedy.soup().values(), greedy.soup().metadata());
      double greedyMetric = scorer.score(work.resolve("greedy")); // the soup as written, at --rank
      io.lorafleet.driver.checkpoint.Checkpoints.deleteTree(tries);
      String table = write(work, ingredients, greedy, uniformMetric, greedyMetric, soupRank);
      ro.publishAll();
      System.out.print(table);
      System.out.println("wrote the greedy soup to " + ro.uri() + "/greedy, the uniform soup to uniform/ and the table to soup.json");
    } finally {
      spark.stop();
    }
    return 0;
  }

  /** soup.json and the printed table: every run's metric and whether the greedy soup took it, then the uniform and greedy soups. */
  private String write(Path work, List<Soup.Ingredient> ingredients, Soup.Greedy greedy, double uniformMetric, double greedyMetric, int soupRank)
      throws java.io.IOException {
    ObjectNode root = JSON.createObjectNode();
    root.put("metric", metric).put("split", split).put("rank", soupRank);
    ArrayNode rows = root.putArray("runs");
    StringBuilder t = new StringBuilder(String.format(Locale.ROOT, "%-32s %14s  %s%n", "candidate", metric, "in greedy soup"));
    for (Soup.Ingredient i : ingredients) {
      boolean in = greedy.ingredients().contains(i.name());
      rows.addObject().put("name", i.name()).put(metric, i.metric()).put("in_greedy_soup", in);
      t.append(String.format(Locale.ROOT, "%-32s %14.6g  %s%n", i.name(), i.metric(), in ? "yes" : ""));
    }
    root.putObject("uniform_soup").put(metric, uniformMetric).put("ingredients", ingredients.size()).put("dir", "uniform");
    ObjectNode g = root.putObject("greedy_soup").put(metric, greedyMetric).put("dir", "greedy");
    greedy.ingredients().forEach(g.putArray("ingredients")::add);
    ArrayNode tried = g.putArray("tried");
    greedy.tried().forEach(x -> tried.addObject().put("name", x.name()).put(metric, x.metric()).put("kept", x.kept()));
    t.append(String.format(Locale.ROOT, "%-32s %14.6g%n", "uniform soup (" + ingredients.size() + ")", uniformMetric));
    t.append(String.format(Locale.ROOT, "%-32s %14.6g%n", "greedy soup (" + greedy.ingredients().size() + ")", greedyMetric));
    Files.writeString(work.resolve("soup.json"), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(root));
    return t.toString();
  }

  /** The runs under --runs with the directory --use names, in runs.json's order (else by name), with the model and data each trained on. */
  private List<Run> runs(org.apache.hadoop.conf.Configuration conf) throws java.io.IOException {
    String root = runs.replaceAll("/+$", "");
    List<String> names = new ArrayList<>();
    Path table = Path.of(root, io.lorafleet.driver.train.MultiRun.TABLE);
    if (!HadoopConf.remote(root) && Files.isRegularFile(table)) {
      JSON.readTree(table.toFile()).forEach(row -> names.add(row.path("name").asText()));
    } else {
      var dir = new org.apache.hadoop.fs.Path(HadoopConf.remote(root) ? root + "/runs" : Path.of(root, "runs").toUri().toString());
      var fs = dir.getFileSystem(conf);
      if (!fs.isDirectory(dir)) {
        throw new IllegalArgumentException("--runs " + runs + ": no runs/ directory (expected the --out of a multi-run train)");
      }
      for (var st : fs.listStatus(dir)) {
        if (st.isDirectory()) {
          names.add(st.getPath().getName());
        }
      }
      java.util.Collections.sort(names);
    }
    List<Run> out = new ArrayList<>();
    for (String n : names) {
      String run = root + "/runs/" + n;
      Optional<String> adapter = RunFiles.directory(run, use, conf);
      Optional<JsonNode> train = ResolvedConfig.train(run, conf);
      if (adapter.isEmpty() || train.isEmpty()) {
        io.lorafleet.driver.report.Progress.say("soup: run " + n + " has no " + use + "/ (it diverged, or kept none); it is left out");
        continue;
      }
      out.add(new Run(n, adapter.get(), train.get().path("io").path("model").asText(), train.get().path("io").path("data").asText()));
    }
    return out;
  }

  /** What every run shares, or a refusal naming the flag that picks one. */
  private static String shared(List<Run> runs, java.util.function.Function<Run, String> f, String flag) {
    String first = f.apply(runs.get(0));
    for (Run r : runs) {
      if (!f.apply(r).equals(first)) {
        throw new IllegalArgumentException("run " + r.name() + " trained on " + f.apply(r) + " but run " + runs.get(0).name() + " on " + first
            + "; give " + flag + " to name the one the soup is measured on");
      }
    }
    return first;
  }
}
