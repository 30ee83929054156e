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
import io.lorafleet.driver.train.GlobalBatch;
import io.lorafleet.driver.train.TrainConfig;
import io.lorafleet.driver.train.Trainer;
import io.lorafleet.worker.generate.Generator;
import io.lorafleet.worker.generate.Sampling;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.model.CausalLM;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.TinyModelSpec;
import io.lorafleet.worker.tokenizer.Tokenizer;
import io.lorafleet.worker.train.Trainable;
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

  public static ObjectNode run(SparkSession spark, Path out, int steps, int trainSize, int evalSize) throws IOException {
    Files.createDirectories(out);
    Path model = out.resolve("base-model");
    System.out.println("[1/5] base model: random Llama-shaped model (2 layers, hidden 96) -> " + model);
    ModelDirectory.initModel(model, new TinyModelSpec("llama", 2, 96, 4, 2, 256, 1, 128, false), SqlTask.vocabulary(), 11);
    System.out.println("[2/5] task: " + trainSize + " generated NL-to-SQL pairs, " + evalSize + " held out");
    StringBuilder sb = new StringBuilder();
    for (SqlTask.Pair p : SqlTask.generate(trainSize, 1)) {
      sb.append(JSON.writeValueAsString(Map.of("context", "question : " + p.question() + " sql :", "target", p.sql()))).append('\n');
    }
    Files.writeString(out.resolve("train.jsonl"), sb);
    List<SqlTask.Pair> heldOut = SqlTask.generate(evalSize, 2);
    System.out.println("[3/5] prepare on Spark");
    Path data = out.resolve("data");
    var manifest = Prepare.run(spark, new PrepareOptions(List.of(out.resolve("train.jsonl").toString()), "jsonl", RecordFormat.CONTEXT_TARGET, Map.of(), "",
        model.toString(), data.toString(), 64, "drop", false, 0, 0.05, 4, 0.01));
    System.out.println("      " + manifest.at("/splits/train/records") + " train / " + manifest.at("/splits/validation/records") + " validation records");
    System.out.println("[4/5] train LoRA (r=16) with 2 workers, checkpoint every 25 steps");
    TrainConfig cfg = new TrainConfig(model.toString(), data.toString(), out.resolve("run").toString(),
        "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,lm_head", 16, 32, 0, 2, steps, 32, 16, 1e-2, 10, "cosine", "adamw", 0.0, 1.0, 25, 4, 0,
        120_000, 2, false, "");
    Trainer.Result res = Trainer.run(spark, cfg, true);
    System.out.println("[5/5] evaluate on held-out data");
    ObjectNode report = JSON.createObjectNode();
    try (CausalLM base = CausalLM.load(model, Device.cpu(), DataType.FLOAT32); Tokenizer tok = Tokenizer.load(model)) {
      AdapterFormat.Loaded adapter = AdapterFormat.read(res.finalAdapter(), base);
      List<Example> val = Prepare.readSplit(data.resolve("validation"));
      double baseLoss = TrainStep.evaluate(adapter.model(), new float[adapter.values().length], GlobalBatch.microBatches(val, 16)).meanLoss();
      double loraLoss = TrainStep.evaluate(adapter.model(), adapter.values(), GlobalBatch.microBatches(val, 16)).meanLoss();
      int baseHit = 0;
      int loraHit = 0;
      ArrayNode samples = report.putArray("samples");
      for (int i = 0; i < heldOut.size(); i++) {
        SqlTask.Pair p = heldOut.get(i);
        int[] prompt = tok.encodePrompt("question : " + p.question() + " sql :");
        String b = tok.decode(Generator.generate(base, Optional.empty(), new float[0], prompt, Sampling.greedy(24), tok.eos())).trim();
        String l = tok.decode(Generator.generate(base, Optional.<Trainable>of(adapter.model()), adapter.values(), prompt, Sampling.greedy(24), tok.eos())).trim();
        baseHit += b.equals(p.sql()) ? 1 : 0;
        loraHit += l.equals(p.sql()) ? 1 : 0;
        if (i < 5) {
          samples.addObject().put("question", p.question()).put("expected", p.sql()).put("base", b).put("lora", l);
        }
      }
      report.put("validation_loss_base", baseLoss);
      report.put("validation_loss_lora", loraLoss);
      report.put("exact_match_base", (double) baseHit / heldOut.size());
      report.put("exact_match_lora", (double) loraHit / heldOut.size());
      report.put("held_out", heldOut.size());
      report.put("steps", steps);
      report.put("first_loss", res.losses().get(0));
      report.put("final_loss", res.losses().get(res.losses().size() - 1));
      report.put("trainable_parameters", adapter.values().length);
      report.put("base_parameters", base.parameterCount());
    }
    Files.writeString(out.resolve("report.json"), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(report));
    System.out.println();
    System.out.printf("%-10s %16s %22s%n", "", "validation loss", "held-out exact match");
    System.out.printf("%-10s %16.4f %21.1f%%%n", "base", report.get("validation_loss_base").asDouble(), 100 * report.get("exact_match_base").asDouble());
    System.out.printf("%-10s %16.4f %21.1f%%%n", "LoRA", report.get("validation_loss_lora").asDouble(), 100 * report.get("exact_match_lora").asDouble());
    System.out.println();
    for (var s : report.get("samples")) {
      System.out.println("Q: " + s.get("question").asText());
      System.out.println("   expected: " + s.get("expected").asText());
      System.out.println("   base:     " + s.get("base").asText());
      System.out.println("   LoRA:     " + s.get("lora").asText());
    }
    System.out.println("\nreport: " + out.resolve("report.json") + ", adapter: " + res.finalAdapter());
    return report;
  }
}
