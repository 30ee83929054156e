package io.lorafleet.driver.cli;

import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.ModelSkeleton;
import io.lorafleet.worker.plan.MemoryPlan;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "plan", mixinStandardHelpOptions = true,
    description = "Predict a LoRA job's peak memory per worker and on the driver from config.json and the safetensors headers; "
        + "with --worker-memory-mb, fail with advice when it will not fit.")
final class PlanCommand implements Callable<Integer> {
  @Option(names = "--model", description = "base model directory or Hadoop URI (its headers only)", required = true) Path model;
  @Option(names = "--seq-len", description = "tokens per example", required = true) int seqLen;
  @Option(names = "--micro-batch", description = "examples per forward/backward pass", defaultValue = "4") int microBatch;
  @Option(names = "--workers", description = "training workers", defaultValue = "2") int workers;
  @Option(names = "--r", description = "LoRA rank", defaultValue = "8") int r;
  @Option(names = "--target-modules", description = "modules to adapt: names (comma-separated), all-linear, or one regex over the module path, as train takes them", defaultValue = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj") String targets;
  @Option(names = "--gradient-checkpointing", description = "plan for train --gradient-checkpointing") boolean checkpointing;
  @Option(names = "--runs", defaultValue = "1", description = "runs of a multi-run job trained at once on the base, each with this rank and "
      + "these targets (every worker holds every adapter, and a slot's mixed pass carries a micro-batch of each)") int runs;
  @Option(names = "--mixed-runs", defaultValue = "0", description = "as train's: the most runs of one mixed pass (0: all)") int mixedRuns;
  @Option(names = "--dtype", defaultValue = "fp32", description = "fp32 (CPU) or fp16 (GPU)") String dtype;
  @Option(names = "--worker-memory-mb", defaultValue = "0", description = "memory a worker has (0: do not check)") long workerMemory;
  @picocli.CommandLine.Mixin QuantizeOptions quantize;

  /** Runs whose micro-batches share a pass. */
  private int perPass() {
    return mixedRuns > 0 ? mixedRuns : runs;
  }

  @Override
  public Integer call() {
    if (!dtype.equals("fp32") && !dtype.equals("fp16")) {
      throw new IllegalArgumentException("--dtype must be fp32 or fp16 but found '" + dtype + "'");
    }
    ModelSkeleton base = ModelSkeleton.read(model);
    LoraModel lora = LoraModel.create(base, LoraConfig.ofTargetModules(r, 2.0 * r, targets));
    int bytes = dtype.equals("fp16") ? 2 : 4;
    var stored = io.lorafleet.worker.quant.QuantizedCheckpoint.of(base.config().raw(), model + "/config.json");
    if (quantize.quantization().on() && !(stored instanceof io.lorafleet.worker.quant.QuantizedCheckpoint.None)) {
      throw new IllegalArgumentException(model + " is stored quantized (" + stored.tag() + "); drop --quantize");
    }
    String q = quantize.quantization().on() ? quantize.quantization().tag() : stored.tag();
    if (runs < 1 || mixedRuns < 0) {
      throw new IllegalArgumentException("--runs must be >= 1 and --mixed-runs >= 0 but found " + runs + " and " + mixedRuns);
    }
    java.util.List<LoraModel> adapters = java.util.Collections.nCopies(runs, lora);
    Map<String, Long> p = MemoryPlan.predict(base, adapters, new MemoryPlan.Shapes(microBatch, seqLen, workers, bytes, checkpointing, q), perPass());
    System.out.printf("%s: %,d parameters, %d layers, hidden %d, vocab %d; LoRA r%d: %,d trainable%s%n", model, base.parameterCount(),
        base.config().layers(), base.config().hidden(), base.config().vocabSize(), r, lora.layout().size(),
        runs > 1 ? String.format(" a run, %d runs on one base", runs) : "");
    System.out.printf("micro-batch %d x %d tokens, %s%s, %d workers%n", microBatch, seqLen, dtype, checkpointing ? ", gradient checkpointing" : "",
        workers);
    long baseBytes = MemoryPlan.baseBytes(base, new MemoryPlan.Shapes(microBatch, seqLen, workers, bytes, checkpointing, q));
    System.out.printf(java.util.Locale.ROOT, "base: %s, %.3f bytes per parameter (%.3f of its %s size)%n", q, (double) baseBytes / base.parameterCount(),
        (double) baseBytes / (base.parameterCount() * (long) bytes), dtype);
    if (!q.equals("none")) {
      System.out.printf(java.util.Locale.ROOT, "  quantized projections: %.4f bytes per parameter%n", MemoryPlan.quantizedBytesPerParam(q));
    }
    p.forEach((k, v) -> System.out.printf("  %-26s %,10d MB%n", k, v));
    if (workerMemory > 0 && p.get("worker_peak_mb") > workerMemory) {
      StringBuilder advice = new StringBuilder();
      if (perPass() > 1) {
        advice.append("--mixed-runs 1 (").append(MemoryPlan.predict(base, adapters, new MemoryPlan.Shapes(microBatch, seqLen, workers, bytes,
            checkpointing, q), 1).get("worker_peak_mb")).append(" MB); ");
      }
      if (!checkpointing) {
        long with = MemoryPlan.predict(base, adapters, new MemoryPlan.Shapes(microBatch, seqLen, workers, bytes, true, q), perPass()).get("worker_peak_mb");
        advice.append("--gradient-checkpointing (").append(with).append(" MB); ");
      }
      if (microBatch > 1) {
        long half = MemoryPlan.predict(base, adapters, new MemoryPlan.Shapes(Math.max(1, microBatch / 2), seqLen, workers, bytes, checkpointing, q), perPass())
            .get("worker_peak_mb");
        advice.append("--micro-batch ").append(Math.max(1, microBatch / 2)).append(" (").append(half).append(" MB); ");
      }
      if (q.equals("none")) {
        advice.append("--quantize nf4 (").append(MemoryPlan.predict(base, adapters, new MemoryPlan.Shapes(microBatch, seqLen, workers, bytes, checkpointing,
            "nf4-dq"), perPass()).get("worker_peak_mb")).append(" MB); ");
      }
      if (bytes == 4) {
        advice.append("fp16 compute on a GPU (--dtype fp16: ")
            .append(MemoryPlan.predict(base, adapters, new MemoryPlan.Shapes(microBatch, seqLen, workers, 2, checkpointing, q), perPass()).get("worker_peak_mb"))
            .append(" MB); ");
      }
      throw new IllegalArgumentException("a worker needs about " + p.get("worker_peak_mb") + " MB but has " + workerMemory + " MB; try "
          + advice.toString().replaceAll("; $", ""));
    }
    return 0;
  }
}
