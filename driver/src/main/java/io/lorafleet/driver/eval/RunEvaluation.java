package io.lorafleet.driver.eval;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.driver.checkpoint.RunFiles;
import io.lorafleet.driver.report.SvgPlot;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Optional;
import org.apache.spark.sql.SparkSession;

/**
 * Evaluates the base, every checkpoint of a run, the averaged adapter and the final adapter side by
 * side; writes eval.json and eval_loss.svg (loss against step, base and averaged adapter as
 * dashed levels) and returns the printed table.
 */
public final class RunEvaluation {
  private static final ObjectMapper JSON = new ObjectMapper();

  private RunEvaluation() {}

  /** One evaluated candidate: a label, its step (-1 when it has none) and its scores. */
  public record Row(String label, int step, Optional<String> adapter, Scores scores) {}

  public static List<Row> candidates(SparkSession spark, String model, io.lorafleet.worker.quant.Quantization quantize, List<Row> todo, String split, int partitions, int limit) {
    return candidates(spark, model, quantize, io.lorafleet.worker.model.Labels.FROM_CONFIG, todo, split, partitions, limit);
  }

  /** As {@link #candidates(SparkSession, String, io.lorafleet.worker.quant.Quantization, List, String, int, int)}, a classifier with {@code labels}. */
  public static List<Row> candidates(SparkSession spark, String model, io.lorafleet.worker.quant.Quantization quantize, io.lorafleet.worker.model.Labels labels,
      List<Row> todo, String split, int partitions, int limit) {
    // every candidate in one pass over the data, as per-row adapters of mixed batches
    if (limit < 1) {
      throw new IllegalArgumentException("--limit must be at least 1 example but found " + limit);
    }
    io.lorafleet.driver.report.Progress.say("eval: " + todo.size() + " candidates in one pass over " + split);
    List<Scores> scores = Evaluator.distributedMany(spark, model, quantize, labels, todo.stream().map(Row::adapter).toList(), split, partitions, limit);
    if (!scores.isEmpty() && scores.get(0).examples() == 0) { // every candidate saw the same rows: none
      throw new IllegalArgumentException("eval: " + split + " holds no example to evaluate; expected a split with rows (data prepared without a "
          + "validation split has its rows in --split train)");
    }
    List<Row> out = new ArrayList<>();
    for (int i = 0; i < todo.size(); i++) {
      Row r = todo.get(i);
      out.add(new Row(r.label(), r.step(), r.adapter(), scores.get(i)));
    }
    return out;
  }

  /** base, checkpoint-*, averaged/, the running averages ema/ and bema/, best/ and adapter/ of a run directory, in that order. */
  public static List<Row> runCandidates(String run, org.apache.hadoop.conf.Configuration conf) throws IOException {
    List<Row> rows = new ArrayList<>();
    rows.add(new Row("base", 0, Optional.empty(), Scores.ZERO));
    for (String c : RunFiles.checkpoints(run, conf)) {
      rows.add(new Row(new org.apache.hadoop.fs.Path(c).getName(), RunFiles.stepOf(c), Optional.of(c), Scores.ZERO));
    }
    for (String name : List.of("averaged", RunFiles.EMA, RunFiles.BEMA, RunFiles.BEST, "adapter")) {
      RunFiles.directory(run, name, conf).ifPresent(d -> rows.add(new Row(name, -1, Optional.of(d), Scores.ZERO)));
    }
    return rows;
  }

  public static String write(Path outDir, List<Row> rows) throws IOException {
    Files.createDirectories(outDir);
    ArrayNode arr = JSON.createArrayNode();
    String name = "%-" + rows.stream().mapToInt(r -> r.label().length()).reduce(18, Math::max) + "s"; // the candidates' column
    StringBuilder table = new StringBuilder(String.format(Locale.ROOT, name + " %6s %10s %11s %12s%n", "candidate", "step", "loss", "perplexity", "exact match"));
    List<Double> xs = new ArrayList<>();
    List<Double> ys = new ArrayList<>();
    List<SvgPlot.Level> levels = new ArrayList<>();
    boolean classifier = rows.stream().anyMatch(r -> r.scores().classification());
    if (classifier) {
      table.setLength(0);
      table.append(String.format(Locale.ROOT, name + " %6s %10s %9s %7s %9s %8s %9s%n", "candidate", "step", "loss", "accuracy", "f1", "matthews", "pearson",
          "spearman"));
    }
    for (Row r : rows) {
      Scores s = r.scores();
      ObjectNode n = arr.addObject();
      n.put("candidate", r.label());
      n.put("step", r.step());
      n.put("adapter", r.adapter().orElse(""));
      n.put("loss", s.loss());
      if (classifier) { // GLUE's metrics; those that do not apply (F1 beyond two classes, correlations without regression) are null
        ClassificationMetrics m = s.metrics();
        putMetric(n, "accuracy", m.accuracy());
        putMetric(n, "f1", m.f1());
        putMetric(n, "matthews_correlation", m.matthews());
        putMetric(n, "pearson", m.pearson());
        putMetric(n, "spearman", m.spearman());
        n.put("examples", s.examples());
        table.append(String.format(Locale.ROOT, name + " %6s %10.4f %9s %7s %9s %8s %9s%n", r.label(), r.step() < 0 ? "-" : Integer.toString(r.step()), s.loss(),
            cell(100 * m.accuracy(), "%.1f%%"), cell(m.f1(), "%.3f"), cell(m.matthews(), "%.3f"), cell(m.pearson(), "%.3f"), cell(m.spearman(), "%.3f")));
      } else {
        putLm(n, r, s, table, name);
      }
      if (r.step() > 0) {
        xs.add((double) r.step());
        ys.add(s.loss());
      } else if (r.label().equals("base")) {
        levels.add(new SvgPlot.Level("base", s.loss(), "#888888"));
      } else if (r.label().equals("averaged")) {
        levels.add(new SvgPlot.Level("averaged", s.loss(), "#d62728"));
      }
    }
    Files.writeString(outDir.resolve("eval.json"), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(arr));
    SvgPlot.write(outDir.resolve("eval_loss.svg"), "Evaluation loss per checkpoint", "step", classifier ? "eval loss (per example)" : "eval loss (target tokens)",
        List.of(new SvgPlot.Series("checkpoints", xs.stream().mapToDouble(Double::doubleValue).toArray(), ys.stream().mapToDouble(Double::doubleValue).toArray(), "#1f77b4")),
        levels);
    return table.toString();
  }

  private static void putMetric(ObjectNode n, String name, double v) {
    if (Double.isNaN(v)) {
      n.putNull(name);
    } else {
      n.put(name, v);
    }
  }

  private static String cell(double v, String fmt) {
    return Double.isNaN(v) ? "-" : String.format(Locale.ROOT, fmt, v);
  }

  /** A causal LM's row: loss, perplexity and exact match. */
  private static void putLm(ObjectNode n, Row r, Scores s, StringBuilder table, String name) {
    n.put("perplexity", s.perplexity());
    n.put("exact_match", s.exactMatch());
    n.put("target_tokens", s.tokens());
    n.put("examples", s.examples());
    table.append(String.format(Locale.ROOT, name + " %6s %10.4f %11.3f %11.1f%%%n", r.label(), r.step() < 0 ? "-" : Integer.toString(r.step()), s.loss(),
        s.perplexity(), 100 * s.exactMatch()));
  }
}
