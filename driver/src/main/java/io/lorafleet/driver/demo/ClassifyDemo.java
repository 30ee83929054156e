package io.lorafleet.driver.demo;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.datasets.prepare.Prepare;
import io.lorafleet.datasets.prepare.PrepareOptions;
import io.lorafleet.driver.eval.RunEvaluation;
import io.lorafleet.driver.eval.Scores;
import io.lorafleet.driver.report.Progress;
import io.lorafleet.driver.train.TrainConfig;
import io.lorafleet.driver.train.Trainer;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.model.Labels;
import io.lorafleet.worker.model.ModelConfig;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.quant.Quantization;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Locale;
import java.util.Optional;
import java.util.Random;
import org.apache.spark.sql.SparkSession;

/**
 * {@code demo --task classify}: a real pretrained encoder fine-tuned on real English. The build
 * (deploy's package phase) gives it all-MiniLM-L6-v2 (a 6-layer BERT, hidden 384, saved with no
 * pooler) as a Hugging Face directory, and LanguageTool's English minimal pairs: sentences with a
 * grammar or spelling error and the same sentences corrected, labelled unacceptable and acceptable.
 *
 * <p>Five candidates on the same held-out pairs, every run with 2 workers, the same rows, batch,
 * schedule and seed: the pretrained body frozen with a trained head alone (a linear probe:
 * target_modules empty), LoRA on every projection with the head (PEFT's SEQ_CLS default; the pooler
 * stays as initialized), the average of its last checkpoints, LoRA with the pooler trained too
 * (modules_to_save pooler, classifier), and the LoRA recipe on randomly initialized weights of the
 * same shape, which shows what pretraining buys.
 */
public final class ClassifyDemo {
  /** The classes, in CoLA's order. */
  public static final List<String> LABELS = List.of("unacceptable", "acceptable");
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final String MODEL = "all-MiniLM-L6-v2";

  private ClassifyDemo() {}

  /** The recipe every run shares. */
  public record Recipe(int trainRows, int epochs, int rank, double lr, long seed) {
    public Recipe {
      if (trainRows < 64 || trainRows % 2 != 0) {
        throw new IllegalArgumentException("--train-size must be an even number of rows (pairs) of at least 64 but found " + trainRows);
      }
      if (epochs < 1) {
        throw new IllegalArgumentException("--epochs must be >= 1 but found " + epochs);
      }
    }

    int steps() {
      return Math.max(1, trainRows * epochs / GLOBAL_BATCH);
    }

    /** Five checkpoints a run; the last 3 averaged. */
    int checkpointEvery() {
      return Math.max(1, steps() / 5);
    }
  }

  private static final int GLOBAL_BATCH = 32;

  /**
   * Runs the demo in {@code out} (replaced) from the build's {@code assets} directory; returns
   * report.json's contents.
   */
  public static ObjectNode run(SparkSession spark, Path assets, Path out, Recipe recipe) throws IOException {
    Path pretrained = assets.resolve(MODEL);
    for (Path p : List.of(pretrained.resolve("model.safetensors"), assets.resolve("train.jsonl"), assets.resolve("heldout.jsonl"))) {
      if (!Files.isRegularFile(p)) {
        throw new IllegalArgumentException("demo --task classify: " + p + " is missing; the build writes it (mvn -B -DskipTests install, or "
            + "deploy/bin/lorafleet builds on first use); expected a directory made by deploy's package phase, found none");
      }
    }
    Files.createDirectories(out);
    Labels labels = Labels.of(LABELS, null, false);
    Progress.say("[1/6] data: " + recipe.trainRows() + " training rows (" + recipe.trainRows() / 2 + " minimal pairs) from LanguageTool's English examples; "
        + "model: " + MODEL + " (6 layers, hidden 384, no pooler in its checkpoint)");
    int pairs = writeTrainingRows(assets.resolve("train.jsonl"), out.resolve("train.jsonl"), recipe.trainRows() / 2, recipe.seed());
    Files.copy(assets.resolve("heldout.jsonl"), out.resolve("heldout.jsonl"), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
    Progress.say("[2/6] prepare on Spark (training rows; held-out pairs)");
    Path data = out.resolve("data");
    Path held = out.resolve("data-heldout");
    Prepare.run(spark, options(out.resolve("train.jsonl"), pretrained, data, labels).build());
    var heldManifest = Prepare.run(spark, options(out.resolve("heldout.jsonl"), pretrained, held, labels).build());
    long heldRows = heldManifest.at("/splits/train/records").asLong();
    Path random = out.resolve("random-init");
    Progress.say("[3/6] the same shape with random weights (transformers' init: N(0, 0.02), norms 1, biases 0) -> " + random);
    writeRandomInit(pretrained, random, recipe.seed());
    String body = "query,key,value,dense";
    Progress.say(String.format(Locale.ROOT, "[4/6] train 4 runs, 2 workers each, %d steps of %d rows (%d epoch%s), AdamW %.0e linear: head alone; LoRA r=%d on %s; "
        + "the same with the pooler trained; LoRA on the random weights", recipe.steps(), GLOBAL_BATCH, recipe.epochs(), recipe.epochs() == 1 ? "" : "s",
        recipe.lr(), recipe.rank(), body));
    List<Run> runs = List.of(
        new Run("head alone (linear probe)", "head", pretrained, LoraConfig.ofTargetModules(recipe.rank(), 2.0 * recipe.rank(), "")),
        new Run("LoRA", "lora", pretrained, LoraConfig.ofTargetModules(recipe.rank(), 2.0 * recipe.rank(), body)),
        new Run("LoRA, pooler trained", "lora-pooler", pretrained,
            LoraConfig.ofTargetModules(recipe.rank(), 2.0 * recipe.rank(), body).withModulesToSave(List.of("pooler", "classifier"))),
        new Run("LoRA on random weights", "random-lora", random, LoraConfig.ofTargetModules(recipe.rank(), 2.0 * recipe.rank(), body)));
    ObjectNode report = JSON.createObjectNode();
    report.put("model", MODEL).put("train_rows", 2 * pairs).put("held_out_rows", heldRows).put("steps", recipe.steps()).put("global_batch", GLOBAL_BATCH)
        .put("lr", recipe.lr()).put("r", recipe.rank()).put("seed", recipe.seed());
    ArrayNode trained = report.putArray("runs");
    for (Run r : runs) {
      Progress.say("      " + r.title());
      long t0 = System.nanoTime();
      Trainer.Result res = Trainer.run(spark, TrainConfig.builder(r.base().toString(), data.toString(), out.resolve(r.dir()).toString())
          .tuner(r.lora()).labels(labels).workers(2).steps(recipe.steps()).globalBatch(GLOBAL_BATCH).microBatch(GLOBAL_BATCH / 2).seed(recipe.seed())
          .lr(recipe.lr()).warmup(Math.max(1, recipe.steps() / 10)).schedule("linear")
          .checkpointEvery(recipe.checkpointEvery()).keepCheckpoints(5).averageLast(Math.min(3, recipe.steps() / recipe.checkpointEvery())).averageMode("svd")
          .overwrite(true) // the demo owns its runs: a repeated demo replaces them
          .build(), false);
      trained.addObject().put("run", r.dir()).put("seconds", (System.nanoTime() - t0) / 1e9).put("first_loss", res.losses().get(0))
          .put("final_loss", res.losses().get(res.losses().size() - 1));
    }
    Progress.say("[5/6] evaluate on the " + heldRows + " held-out rows (pairs never seen in training)");
    String heldSplit = held.resolve("train").toString();
    List<RunEvaluation.Row> rows = new ArrayList<>(RunEvaluation.candidates(spark, pretrained.toString(), Quantization.NONE, labels, List.of(
        candidate("pretrained, head alone", out.resolve("head/adapter")),
        candidate("pretrained, LoRA", out.resolve("lora/adapter")),
        candidate("pretrained, LoRA averaged", out.resolve("lora/averaged")),
        candidate("pretrained, LoRA + pooler", out.resolve("lora-pooler/adapter"))), heldSplit, 2, Integer.MAX_VALUE));
    rows.addAll(RunEvaluation.candidates(spark, random.toString(), Quantization.NONE, labels,
        List.of(candidate("random init, LoRA", out.resolve("random-lora/adapter"))), heldSplit, 2, Integer.MAX_VALUE));
    String table = RunEvaluation.write(out, rows);
    ArrayNode cands = report.putArray("candidates");
    for (RunEvaluation.Row r : rows) {
      var m = r.scores().metrics();
      cands.addObject().put("candidate", r.label()).put("adapter", r.adapter().orElse("")).put("loss", r.scores().loss()).put("accuracy", m.accuracy())
          .put("f1", m.f1()).put("matthews", m.matthews());
    }
    Files.writeString(out.resolve("report.json"), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(report));
    Progress.say("[6/6] results");
    System.out.println();
    System.out.print(table);
    System.out.printf(Locale.ROOT, "%nheld-out accuracy (chance 50%%): head alone %.1f%%, LoRA %.1f%%, LoRA averaged %.1f%%, LoRA + pooler %.1f%%, "
        + "LoRA on random weights %.1f%%%n", pct(rows, 0), pct(rows, 1), pct(rows, 2), pct(rows, 3), pct(rows, 4));
    System.out.println(MODEL + " ships no pooler: the runs without 'pooler' in their name keep the one initialized at load, frozen, as PEFT's SEQ_CLS does.");
    System.out.println("\nreport: " + out.resolve("report.json") + "; adapters: " + out.resolve("lora/adapter") + ", " + out.resolve("lora/averaged"));
    return report;
  }

  private record Run(String title, String dir, Path base, LoraConfig lora) {}

  private static RunEvaluation.Row candidate(String label, Path adapter) {
    return new RunEvaluation.Row(label, -1, Optional.of(adapter.toString()), Scores.ZERO);
  }

  private static double pct(List<RunEvaluation.Row> rows, int i) {
    return 100 * rows.get(i).scores().metrics().accuracy();
  }

  private static PrepareOptions.Builder options(Path input, Path model, Path out, Labels labels) {
    return PrepareOptions.builder(List.of(input.toString()), model.toString(), out.toString()).inputType("jsonl").format(io.lorafleet.datasets.prepare.RecordFormat.CLASSIFICATION)
        .labels(labels).maxSeqLen(64).truncation("drop").shards(2).maxBadFraction(0.0).overwrite(true);
  }

  /**
   * {@code pairs} minimal pairs of {@code from} (each pair two consecutive rows), drawn with a
   * seeded shuffle so that every rule of the file can appear; returns how many were written.
   */
  private static int writeTrainingRows(Path from, Path to, int pairs, long seed) throws IOException {
    List<String> lines = Files.readAllLines(from);
    if (lines.size() % 2 != 0) {
      throw new IllegalArgumentException(from + ": expected pairs of rows but found " + lines.size() + " rows");
    }
    List<Integer> order = new ArrayList<>();
    for (int i = 0; i < lines.size() / 2; i++) {
      order.add(i);
    }
    Collections.shuffle(order, new Random(seed));
    int n = Math.min(pairs, order.size());
    StringBuilder sb = new StringBuilder();
    for (int i : order.subList(0, n)) {
      sb.append(lines.get(2 * i)).append('\n').append(lines.get(2 * i + 1)).append('\n');
    }
    Files.writeString(to, sb);
    return n;
  }

  /** {@code pretrained}'s config.json and tokenizer.json over random tensors of the same shapes. */
  private static void writeRandomInit(Path pretrained, Path dir, long seed) throws IOException {
    ObjectNode config = (ObjectNode) JSON.readTree(pretrained.resolve("config.json").toFile());
    ModelConfig c = ModelConfig.fromJson(config, pretrained.resolve("config.json").toString());
    ModelDirectory.write(dir, config, ModelDirectory.randomTensors(c, 17 + 1000 * seed));
    Files.copy(pretrained.resolve("tokenizer.json"), dir.resolve("tokenizer.json"), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
  }
}
