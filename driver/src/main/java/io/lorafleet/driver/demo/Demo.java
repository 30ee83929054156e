package io.lorafleet.driver.demo;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.datasets.arrow.Example;
import io.lorafleet.datasets.prepare.Prepare;
import io.lorafleet.datasets.prepare.PrepareOptions;
import io.lorafleet.datasets.prepare.RecordFormat;
import io.lorafleet.driver.eval.RunEvaluation;
import io.lorafleet.driver.report.Progress;
import io.lorafleet.driver.executor.GlobalBatch;
import io.lorafleet.driver.executor.ModelCache;
import io.lorafleet.driver.train.TrainConfig;
import io.lorafleet.driver.train.Trainer;
import io.lorafleet.worker.flat.Trainable;
import io.lorafleet.worker.generate.Generator;
import io.lorafleet.worker.generate.Sampling;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.TinyModelSpec;
import io.lorafleet.worker.tokenizer.Tokenizer;
import io.lorafleet.worker.train.TrainStep;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.spark.sql.SparkSession;

/**
 * The end-to-end demo on embedded local Spark: make a small base model, generate an NL-to-SQL task,
 * prepare it, train a LoRA adapter on 2 workers, and evaluate base and adapter on held-out data.
 */
public final class Demo {
  private static final ObjectMapper JSON = new ObjectMapper();

  private Demo() {}

  /** The demo, with every seed derived from {@code seed}: the base's weights and pretraining, the generated task and the LoRA run. */
  public static ObjectNode run(SparkSession spark, Path out, int pretrainSteps, int steps, int trainSize, int evalSize, long seed) throws IOException {
    Files.createDirectories(out);
    Path model = out.resolve("base-model");
    Progress.say("[1/7] base model: Llama-shaped (2 layers, hidden 96), pre-trained by full fine-tuning on a synthetic copy corpus -> " + model);
    ModelDirectory.initModel(model, new TinyModelSpec("llama", 2, 96, 4, 2, 256, 1, 128, false), SqlTask.vocabulary(), 11 + 1000 * seed);
    long t0 = System.nanoTime();
    double pre = Pretrain.run(model, pretrainSteps, 32, 3e-3, 5 + 1000 * seed);
    Progress.say(String.format("      %d full fine-tuning steps in %.0f s, final copy loss %.3f", pretrainSteps, (System.nanoTime() - t0) / 1e9, pre));
    List<SqlTask.Pair> heldOut = writeTask(out, trainSize, evalSize, seed);
    Progress.say("[3/7] prepare on Spark (training set with a 5% validation split; held-out set)");
    Path data = out.resolve("data");
    var manifest = Prepare.run(spark, PrepareOptions.builder(List.of(out.resolve("train.jsonl").toString()), model.toString(), data.toString())
        .inputType("jsonl").maxSeqLen(64).truncation("drop").valFraction(0.05).shards(4).maxBadFraction(0.01).overwrite(true).build());
    Path heldData = out.resolve("data-heldout");
    Prepare.run(spark, PrepareOptions.builder(List.of(out.resolve("heldout.jsonl").toString()), model.toString(), heldData.toString())
        .inputType("jsonl").maxSeqLen(64).truncation("drop").shards(2).maxBadFraction(0.01).overwrite(true).build());
    Progress.say("      " + manifest.at("/splits/train/records") + " train / " + manifest.at("/splits/validation/records") + " validation / "
        + heldOut.size() + " held-out records");
    Progress.say("[4/7] train LoRA (r=16) with 2 workers, checkpoint every 50 steps (keep 8), validation loss every 50");
    Progress.say("[5/7] average the last 4 checkpoints (svd at rank 16) into run/averaged");
    TrainConfig cfg = TrainConfig.builder(model.toString(), data.toString(), out.resolve("run").toString())
        .tuner(LoraConfig.ofTargetModules(16, 32, "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,lm_head"))
        .workers(2).steps(steps).globalBatch(32).microBatch(16).seed(seed)
        .lr(3e-3).warmup(10).schedule("cosine")
        .checkpointEvery(50).keepCheckpoints(8).maxAttempts(2).evalEvery(50).evalExamples(64).averageLast(4).averageMode("svd")
        .overwrite(true) // the demo owns run/: a repeated demo replaces it
        .build();
    Trainer.Result res = Trainer.run(spark, cfg, true);
    Progress.say("[6/7] evaluate base, checkpoints, averaged and final adapter on the held-out set (loss, greedy exact match)");
    var rows = RunEvaluation.candidates(spark, model.toString(), io.lorafleet.worker.quant.Quantization.NONE, RunEvaluation.runCandidates(out.resolve("run").toString(), spark.sparkContext().hadoopConfiguration()),
        heldData.resolve("train").toString(), 2, evalSize);
    String table = RunEvaluation.write(out, rows);
    ObjectNode report = report(rows, heldOut.size(), pretrainSteps, pre, steps, res);
    report.put("averaging", JSON.readTree(AdapterFormat.read(out.resolve("run/averaged"), ModelCache.model(model.toString(), Device.cpu(),
        io.lorafleet.worker.quant.Quantization.NONE)).metadata().get("lorafleet.combine")));
    Progress.say("[7/7] results");
    ArrayNode samples = samples(report, model, res.finalAdapter(), heldOut);
    Files.writeString(out.resolve("report.json"), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(report));
    print(table, rows, samples);
    System.out.println("\nreport: " + out.resolve("report.json") + "; plots: " + out.resolve("run/loss.svg") + ", " + out.resolve("eval_loss.svg")
        + "; adapter: " + res.finalAdapter());
    return report;
  }

  /** Step 2: the generated NL-to-SQL task as train.jsonl, and held-out.jsonl of questions never seen in training; returns the held-out pairs. */
  private static List<SqlTask.Pair> writeTask(Path out, int trainSize, int evalSize, long seed) throws IOException {
    Progress.say("[2/7] task: " + trainSize + " generated NL-to-SQL pairs, " + evalSize + " held out");
    List<SqlTask.Pair> train = SqlTask.generate(trainSize, 1 + 1000 * seed);
    java.util.Set<String> seen = new java.util.HashSet<>();
    train.forEach(p -> seen.add(p.question()));
    List<SqlTask.Pair> heldOut = SqlTask.generate(evalSize * 2, 2 + 1000 * seed).stream().filter(p -> !seen.contains(p.question())).limit(evalSize).toList();
    Files.writeString(out.resolve("train.jsonl"), jsonl(train));
    Files.writeString(out.resolve("heldout.jsonl"), jsonl(heldOut));
    return heldOut;
  }

  private static String jsonl(List<SqlTask.Pair> pairs) throws IOException {
    StringBuilder sb = new StringBuilder();
    for (SqlTask.Pair p : pairs) {
      sb.append(JSON.writeValueAsString(Map.of("context", "question : " + p.question() + " sql :", "target", p.sql()))).append('\n');
    }
    return sb.toString();
  }

  /** report.json's figures: every candidate's held-out scores, and base, final and averaged side by side. */
  private static ObjectNode report(List<RunEvaluation.Row> rows, int heldOut, int pretrainSteps, double pre, int steps, Trainer.Result res) {
    ObjectNode report = JSON.createObjectNode();
    ArrayNode cands = report.putArray("candidates");
    for (RunEvaluation.Row r : rows) {
      cands.addObject().put("candidate", r.label()).put("step", r.step()).put("loss", r.scores().loss()).put("exact_match", r.scores().exactMatch());
    }
    RunEvaluation.Row base0 = rows.get(0);
    RunEvaluation.Row fin = row(rows, "adapter");
    RunEvaluation.Row avg = row(rows, "averaged");
    report.put("held_out", heldOut);
    report.put("exact_match_base", base0.scores().exactMatch());
    report.put("exact_match_lora", fin.scores().exactMatch());
    report.put("exact_match_averaged", avg.scores().exactMatch());
    report.put("heldout_loss_base", base0.scores().loss());
    report.put("heldout_loss_lora", fin.scores().loss());
    report.put("heldout_loss_averaged", avg.scores().loss());
    report.put("pretrain_steps", pretrainSteps);
    report.put("pretrain_final_loss", pre);
    report.put("steps", steps);
    report.put("first_loss", res.losses().get(0));
    report.put("final_loss", res.losses().get(res.losses().size() - 1));
    return report;
  }

  private static RunEvaluation.Row row(List<RunEvaluation.Row> rows, String label) {
    return rows.stream().filter(r -> r.label().equals(label)).findFirst().orElseThrow();
  }

  /** Greedy answers of the base and of the final adapter to the first five held-out questions. */
  private static ArrayNode samples(ObjectNode report, Path model, Path adapterDir, List<SqlTask.Pair> heldOut) throws IOException {
    ArrayNode samples = report.putArray("samples");
    try (LanguageModel base = LanguageModel.load(model, Device.cpu(), DataType.FLOAT32); Tokenizer tok = Tokenizer.load(model)) {
      AdapterFormat.Loaded adapter = AdapterFormat.read(adapterDir, base);
      report.put("trainable_parameters", adapter.values().length);
      report.put("base_parameters", base.parameterCount());
      for (SqlTask.Pair p : heldOut.subList(0, Math.min(5, heldOut.size()))) {
        int[] prompt = tok.encodePrompt("question : " + p.question() + " sql :");
        String b = tok.decode(Generator.generate(base, Optional.empty(), new float[0], prompt, Sampling.greedy(24), tok.eos())).trim();
        String l = tok.decode(Generator.generate(base, Optional.<Trainable>of(adapter.model()), adapter.values(), prompt, Sampling.greedy(24), tok.eos())).trim();
        samples.addObject().put("question", p.question()).put("expected", p.sql()).put("base", b).put("lora", l);
      }
    }
    return samples;
  }

  /** Step 7: the evaluation table, the exact-match line, what averaging did, and the samples. */
  private static void print(String table, List<RunEvaluation.Row> rows, ArrayNode samples) {
    RunEvaluation.Row base0 = rows.get(0);
    RunEvaluation.Row fin = row(rows, "adapter");
    RunEvaluation.Row avg = row(rows, "averaged");
    System.out.println();
    System.out.print(table);
    System.out.printf("%nheld-out exact match: base %.1f%%, final adapter %.1f%%, averaged (last 4 checkpoints, svd) %.1f%%%n",
        100 * base0.scores().exactMatch(), 100 * fin.scores().exactMatch(), 100 * avg.scores().exactMatch());
    double dl = avg.scores().loss() - fin.scores().loss();
    System.out.printf("averaging %s the held-out loss by %.4f (%.4f -> %.4f)%n%n", dl < 0 ? "lowered" : "raised", Math.abs(dl), fin.scores().loss(), avg.scores().loss());
    for (var smp : samples) {
      System.out.println("Q: " + smp.get("question").asText());
      System.out.println("   expected: " + smp.get("expected").asText());
      System.out.println("   base:     " + smp.get("base").asText());
      System.out.println("   LoRA:     " + smp.get("lora").asText());
    }
  }
}
