package io.lorafleet.driver.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.lorafleet.worker.bench.StepBenchmark;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "bench-step", mixinStandardHelpOptions = true,
    description = "Benchmark a LoRA training step against a full fine-tuning step on one model and batch (tokens/s, peak RSS, FLOP/s vs matmul peak).")
final class BenchStepCommand implements Callable<Integer> {
  @Option(names = "--arch", defaultValue = "llama", description = "the random model: llama, or the encoders bert, roberta and deberta-v2 (sequence "
      + "classification, 2 labels; LoRA against full fine-tuning or --variants)") String arch;
  @Option(names = "--hidden", description = "hidden size of the benchmark model", defaultValue = "512") int hidden;
  @Option(names = "--layers", description = "decoder layers", defaultValue = "4") int layers;
  @Option(names = "--intermediate", description = "MLP intermediate size", defaultValue = "1376") int intermediate;
  @Option(names = "--vocab", description = "vocabulary size", defaultValue = "8192") int vocab;
  @Option(names = "--seq-len", description = "tokens per example", defaultValue = "256") int seqLen;
  @Option(names = "--batch", description = "examples per step", defaultValue = "4") int batch;
  @Option(names = "--r", description = "LoRA rank", defaultValue = "16") int rank;
  @Option(names = "--target-modules", description = "modules to adapt", defaultValue = "all-linear", split = ",") java.util.List<String> targets;
  @Option(names = "--warmup", description = "untimed steps of each kind first", defaultValue = "2") int warmup;
  @Option(names = "--steps", description = "timed steps of each kind", defaultValue = "10") int steps;
  @Option(names = "--gradient-checkpointing", description = "LoRA alone with layer checkpointing, blockwise attention and a chunked loss") boolean checkpointing;
  @Option(names = "--variants", description = "LoRA against DoRA (same r) and VeRA (r 256) instead of against full fine-tuning") boolean variants;
  @picocli.CommandLine.Mixin QuantizeOptions quantize;
  @Option(names = "--model", defaultValue = "", description = "an HF model directory to load (quantized with --quantize, or as stored), "
      + "LoRA alone over it; default: a random model of --hidden/--layers/... (written to a temporary directory with --quantize)") String model;
  @Option(names = "--baseline", negatable = true, defaultValue = "true", fallbackValue = "true", description = "with --quantize: also load the "
      + "base in fp32 and time LoRA over it, interleaved") boolean baseline;

  @Option(names = "--mixed-adapters", defaultValue = "0", description = "instead: the forward pass of a batch mixing N adapters (r --r, "
      + "all-linear) against one adapter and against N separate batches") int mixedAdapters;

  @Override
  public Integer call() throws Exception {
    if (mixedAdapters > 0) {
      System.out.println(new ObjectMapper().writerWithDefaultPrettyPrinter().writeValueAsString(io.lorafleet.worker.bench.MixedAdapterBenchmark.run(
          base(), new StepBenchmark.Load(seqLen, batch, warmup, steps, false, io.lorafleet.worker.quant.Quantization.NONE), rank, mixedAdapters)));
      return 0;
    }
    var res = StepBenchmark.run(new StepBenchmark.Settings(base(),
        new StepBenchmark.Load(seqLen, batch, warmup, steps, checkpointing, quantize.quantization()),
        new StepBenchmark.Adapter(rank, targets, variants, baseline)));
    System.out.println(new ObjectMapper().writerWithDefaultPrettyPrinter().writeValueAsString(res));
    return 0;
  }

  private StepBenchmark.Base base() {
    return new StepBenchmark.Base(arch, hidden, layers, intermediate, vocab, model);
  }
}
