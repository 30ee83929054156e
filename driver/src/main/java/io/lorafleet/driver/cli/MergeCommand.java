package io.lorafleet.driver.cli;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.datasets.fs.NodeCopy;
import io.lorafleet.driver.checkpoint.RunOutput;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.model.LanguageModel;
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
  @Option(names = "--model", description = "base model directory (a path or a Hadoop URI)", required = true) String model;
  @Option(names = "--adapter", description = "the PEFT adapter to merge into it (a path or a Hadoop URI)", required = true) String adapter;
  @Option(names = "--out", description = "the merged HF model directory to write (a path or a Hadoop URI)", required = true) String out;
  @Option(names = "--overwrite", description = "replace what --out holds (otherwise an output that holds files is refused)") boolean overwrite;
  @Option(names = "--dtype", defaultValue = "fp32", description = "dtype of the exported weights: fp32, fp16 or bf16 (rounded to nearest even)")
  String dtype;
  @picocli.CommandLine.Mixin QuantizeOptions quantize;
  @Option(names = "--max-shard-size", defaultValue = "5GB", description = "shard the weights past this size, with model.safetensors.index.json, "
      + "as save_pretrained does (e.g. 5GB, 500MB, 2GiB)") String maxShardSize;

  /** transformers' size strings: a number and B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024). */
  static long bytes(String size) {
    var m = java.util.regex.Pattern.compile("(\\d+(?:\\.\\d+)?)\\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)").matcher(size.trim());
    if (!m.matches()) {
      throw new IllegalArgumentException("--max-shard-size must be a number and a unit (B, KB, MB, GB, KiB, MiB, GiB) such as 5GB, but found '"
          + size + "'");
    }
    double unit = switch (m.group(2)) {
      case "B" -> 1;
      case "KB" -> 1e3;
      case "MB" -> 1e6;
      case "GB" -> 1e9;
      case "TB" -> 1e12;
      case "KiB" -> 1024;
      case "MiB" -> 1024 * 1024;
      case "GiB" -> Math.pow(1024, 3);
      default -> Math.pow(1024, 4);
    };
    return (long) (Double.parseDouble(m.group(1)) * unit);
  }

  @Override
  public Integer call() throws Exception {
    long shardBytes = bytes(maxShardSize);
    DType exported = switch (dtype) {
      case "fp32" -> DType.F32;
      case "fp16" -> DType.F16;
      case "bf16" -> DType.BF16;
      default -> throw new IllegalArgumentException("--dtype must be fp32, fp16 or bf16 but found '" + dtype + "'");
    };
    RunOutput ro = Outputs.claim(out, overwrite, List.of(model, adapter));
    Path modelDir = NodeCopy.of(model, NodeCopy.Kind.ALL);
    Path adapterDir = NodeCopy.of(adapter, NodeCopy.Kind.ALL);
    // a classifier's labels as the adapter records them: the merged config.json's id2label
    try (LanguageModel base = LanguageModel.load(modelDir, Device.cpu(), DataType.FLOAT32, quantize.quantization(), AdapterFormat.labels(adapterDir))) {
      AdapterFormat.Loaded a = AdapterFormat.read(adapterDir, base);
      if (base.isQuantized()) {
        io.lorafleet.driver.report.Progress.say("dequantizing the " + base.quantization() + " base before merging: the merged model is W_dequantized + s*B*A");
        base.dequantize();
      }
      a.model().merge(a.values());
      ModelDirectory.export(ro.local(), base, modelDir, exported, shardBytes);
    }
    ro.publishAll();
    System.out.println("merged model written to " + out);
    return 0;
  }
}
