package io.lorafleet.driver.cli;

import io.lorafleet.datasets.fs.NodeCopy;
import io.lorafleet.driver.checkpoint.RunOutput;
import io.lorafleet.worker.model.QuantizeModel;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "quantize", mixinStandardHelpOptions = true, description = "Write a full-precision HF model as a bitsandbytes 4-bit NF4 checkpoint "
    + "(the layout transformers saves and loads): projections quantized, embeddings, norms and lm_head as stored.")
final class QuantizeCommand implements Callable<Integer> {
  @Option(names = "--model", required = true, description = "the full-precision HF model directory (a path or a Hadoop URI)") String model;
  @Option(names = "--out", required = true, description = "the quantized HF model directory to write (a path or a Hadoop URI)") String out;
  @Option(names = "--double-quant", negatable = true, defaultValue = "true", fallbackValue = "true",
      description = "quantize the per-block scales too (bnb_4bit_use_double_quant)") boolean doubleQuant = true;
  @Option(names = "--overwrite", description = "replace what --out holds (otherwise an output that holds files is refused)") boolean overwrite;

  @Override
  public Integer call() throws Exception {
    RunOutput ro = Outputs.claim(out, overwrite, List.of(model));
    QuantizeModel.Written w = QuantizeModel.write(NodeCopy.of(model, NodeCopy.Kind.ALL), ro.local(), doubleQuant);
    ro.publishAll();
    System.out.printf(Locale.ROOT, "quantized %d projections (%,d parameters) to %,d bytes, %.3f bits a parameter; wrote %s%n", w.quantizedTensors(),
        w.quantizedParams(), w.quantizedBytes(), 8.0 * w.quantizedBytes() / w.quantizedParams(), out);
    return 0;
  }
}
