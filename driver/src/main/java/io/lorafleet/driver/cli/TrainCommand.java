package io.lorafleet.driver.cli;

import io.lorafleet.driver.train.TrainConfig;
import io.lorafleet.driver.train.Trainer;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "train", mixinStandardHelpOptions = true, description = "Train a LoRA adapter on N Spark workers; the driver all-reduces gradients and checkpoints.")
final class TrainCommand implements Callable<Integer> {
  @Option(names = "--config", description = "a YAML or JSON job file: fields are these flags without '--', plus a 'spark' map of Spark confs; flags override it") String config;
  @Option(names = "--spark-conf", description = "a Spark conf key=value (repeatable)") Map<String, String> sparkConf = new LinkedHashMap<>();
  @Option(names = "--model", required = true) String model;
  @Option(names = "--data", required = true, description = "a directory written by lorafleet prepare") String data;
  @Option(names = "--out", required = true) String out;
  @Option(names = "--target-modules", defaultValue = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj") String targets;
  @Option(names = "--r", defaultValue = "8") int r;
  @Option(names = "--lora-alpha", defaultValue = "16") double alpha;
  @Option(names = "--lora-dropout", defaultValue = "0.0") double dropout;
  @Option(names = "--workers", defaultValue = "2") int workers;
  @Option(names = "--steps", defaultValue = "100") int steps;
  @Option(names = "--global-batch", defaultValue = "8") int globalBatch;
  @Option(names = "--micro-batch", defaultValue = "4") int microBatch;
  @Option(names = "--lr", defaultValue = "1e-3") double lr;
  @Option(names = "--warmup", defaultValue = "0") int warmup;
  @Option(names = "--schedule", defaultValue = "cosine") String schedule;
  @Option(names = "--optimizer", defaultValue = "adamw") String optimizer;
  @Option(names = "--weight-decay", defaultValue = "0.0") double weightDecay;
  @Option(names = "--clip", defaultValue = "1.0") double clip;
  @Option(names = "--checkpoint-every", defaultValue = "10") int checkpointEvery;
  @Option(names = "--keep-checkpoints", defaultValue = "5") int keep;
  @Option(names = "--seed", defaultValue = "0") long seed;
  @Option(names = "--timeout-ms", defaultValue = "120000") int timeoutMs;
  @Option(names = "--max-attempts", defaultValue = "3") int maxAttempts;
  @Option(names = "--resume") boolean resume;
  @Option(names = "--init-adapter", defaultValue = "") String initAdapter;
  @Option(names = "--eval-every", defaultValue = "0", description = "validation loss every N steps (0: never)") int evalEvery;
  @Option(names = "--eval-examples", defaultValue = "64") int evalExamples;
  @Option(names = "--average-last", defaultValue = "0", description = "average the last K checkpoints into averaged/") int averageLast;
  @Option(names = "--average-mode", defaultValue = "svd", description = "factor, cat or svd") String averageMode;

  @Override
  public Integer call() throws Exception {
    TrainConfig cfg = new TrainConfig(model, data, out, targets, r, alpha, dropout, workers, steps, globalBatch, microBatch, lr, warmup, schedule,
        optimizer, weightDecay, clip, checkpointEvery, keep, seed, timeoutMs, maxAttempts, resume, initAdapter, evalEvery, evalExamples, averageLast, averageMode);
    var spark = Spark.session("train", workers, sparkConf);
    try {
      var res = Trainer.run(spark, cfg, true);
      System.out.println("adapter written to " + res.finalAdapter());
    } finally {
      spark.stop();
    }
    return 0;
  }
}
