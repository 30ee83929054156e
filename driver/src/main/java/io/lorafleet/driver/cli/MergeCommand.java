package io.lorafleet.driver.cli;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.model.CausalLM;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.safetensors.DType;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "merge", mixinStandardHelpOptions = true, description = "Merge an adapter into its base (W + s*B*A) and export an HF model directory. "
    + "A quantized base (stored, or --quantize) is dequantized first and exported in full precision.")
final class MergeCommand implements Callable<Integer> {
  @Option(names = "--model", description = "base model directory", required = true) Path model;
  @Option(names = "--adapter", description = "the PEFT adapter to merge into it", required = true) Path adapter;
  @Option(names = "--out", description = "the merged HF model directory to write", required = true) Path out;
  @Option(names = "--overwrite", description = "replace what --out holds (otherwise an output that holds files is refused)") boolean overwrite;
  @Option(names = "--dtype", defaultValue = "fp32", description = "dtype of the exported weights: fp32, fp16 or bf16 (rounded to nearest even)")
  String dtype;
  @picocli.CommandLine.Mixin QuantizeOptions quantize;

  @Override
  public Integer call() throws Exception {
    DType exported = switch (dtype) {
      case "fp32" -> DType.F32;
      case "fp16" -> DType.F16;
      case "bf16" -> DType.BF16;
      default -> throw new IllegalArgumentException("--dtype must be fp32, fp16 or bf16 but found '" + dtype + "'");
    };
    Outputs.claim(out, overwrite, List.of(model, adapter));
    try (CausalLM base = CausalLM.load(model, Device.cpu(), DataType.FLOAT32, quantize.quantization())) {
      AdapterFormat.Loaded a = AdapterFormat.read(adapter, base);
      if (base.isQuantized()) {
        System.out.println("dequantizing the " + base.quantization() + " base before merging: the merged model is W_dequantized + s*B*A");
        base.dequantize();
      }
      a.model().merge(a.values());
      ModelDirectory.export(out, base, model, exported);
    }
    System.out.println("merged model written to " + out);
    return 0;
  }
}
