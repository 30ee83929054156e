package io.lorafleet.driver.cli;

import io.lorafleet.driver.demo.ClassifyDemo;
import io.lorafleet.driver.demo.Demo;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "demo", mixinStandardHelpOptions = true, description = {
    "Run an end-to-end demo on embedded local Spark.",
    "--task sql (default): a small base made and pre-trained on the spot, a generated text-to-SQL task, prepare, 2-worker LoRA training, averaging, evaluation.",
    "--task classify: all-MiniLM-L6-v2 (a real pretrained BERT) fine-tuned on LanguageTool's English minimal pairs (acceptable or not), both from Maven Central at "
        + "build time; held-out accuracy of a trained head alone, LoRA, averaged LoRA, LoRA with the pooler, and LoRA on random weights."})
final class DemoCommand implements Callable<Integer> {
  @Option(names = "--task", description = "sql or classify", defaultValue = "sql") String task;
  @Option(names = "--out", description = "the demo's directory (replaced on every run; default lorafleet-demo, or lorafleet-demo-classify)") Path out;
  @Option(names = "--pretrain-steps", defaultValue = "1500", description = "sql: full fine-tuning steps that give the base its copy skill") int pretrainSteps;
  @Option(names = "--steps", description = "sql: LoRA training steps", defaultValue = "600") int steps;
  @Option(names = "--train-size", description = "training examples: sql 3000 generated pairs; classify 4000 rows (2000 minimal pairs)") Integer trainSize;
  @Option(names = "--eval-size", description = "sql: held-out questions", defaultValue = "100") int evalSize;
  @Option(names = "--epochs", description = "classify: passes over the training rows", defaultValue = "1") int epochs;
  @Option(names = "--lr", description = "classify: AdamW's peak learning rate", defaultValue = "2e-3") double lr;
  @Option(names = "--r", description = "classify: LoRA rank", defaultValue = "8") int r;
  @Option(names = "--assets", description = "classify: the build's model and data (deploy/target/demo-classify, which the launcher passes)",
      defaultValue = "${sys:lorafleet.demo.assets:-deploy/target/demo-classify}") Path assets;
  @Option(names = "--seed", description = "seed of everything the demo draws: weights, data, order, adapter init", defaultValue = "0") long seed;

  @Override
  public Integer call() throws Exception {
    if (!task.equals("sql") && !task.equals("classify")) {
      throw new IllegalArgumentException("--task must be sql or classify but found '" + task + "'");
    }
    var spark = Spark.session("demo", 2);
    try {
      if (task.equals("classify")) {
        ClassifyDemo.run(spark, assets, out != null ? out : Path.of("lorafleet-demo-classify"),
            new ClassifyDemo.Recipe(trainSize != null ? trainSize : 4000, epochs, r, lr, seed));
      } else {
        Demo.run(spark, out != null ? out : Path.of("lorafleet-demo"), pretrainSteps, steps, trainSize != null ? trainSize : 3000, evalSize, seed);
      }
    } finally {
      spark.stop();
    }
    return 0;
  }
}
