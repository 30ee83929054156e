package io.lorafleet.driver.cli;

import io.lorafleet.driver.demo.Demo;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "demo", mixinStandardHelpOptions = true, description = "Run the end-to-end demo on embedded local Spark: model, task, prepare, 2-worker LoRA training, evaluation.")
final class DemoCommand implements Callable<Integer> {
  @Option(names = "--out", description = "the demo's directory (replaced on every run)", defaultValue = "lorafleet-demo") Path out;
  @Option(names = "--pretrain-steps", defaultValue = "1500", description = "full fine-tuning steps that give the base its copy skill") int pretrainSteps;
  @Option(names = "--steps", description = "LoRA training steps", defaultValue = "600") int steps;
  @Option(names = "--train-size", description = "generated training pairs", defaultValue = "3000") int trainSize;
  @Option(names = "--eval-size", description = "held-out questions", defaultValue = "100") int evalSize;
  @Option(names = "--seed", description = "seed of the base's weights and pretraining, the task's data and the LoRA run", defaultValue = "0") long seed;

  @Override
  public Integer call() throws Exception {
    var spark = Spark.session("demo", 2);
    try {
      Demo.run(spark, out, pretrainSteps, steps, trainSize, evalSize, seed);
    } finally {
      spark.stop();
    }
    return 0;
  }
}
