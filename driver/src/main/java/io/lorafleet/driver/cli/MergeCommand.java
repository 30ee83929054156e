package io.lorafleet.driver.cli;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.model.CausalLM;
import io.lorafleet.worker.model.ModelDirectory;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "merge", mixinStandardHelpOptions = true, description = "Merge an adapter into its base (W + s*B*A) and export an HF model directory.")
final class MergeCommand implements Callable<Integer> {
  @Option(names = "--model", description = "base model directory", required = true) Path model;
  @Option(names = "--adapter", description = "the PEFT adapter to merge into it", required = true) Path adapter;
  @Option(names = "--out", description = "the merged HF model directory to write", required = true) Path out;
  @Option(names = "--overwrite", description = "replace what --out holds (otherwise an output that holds files is refused)") boolean overwrite;

  @Override
  public Integer call() throws Exception {
    Outputs.claim(out, overwrite, List.of(model, adapter));
    try (CausalLM base = CausalLM.load(model, Device.cpu(), DataType.FLOAT32)) {
      AdapterFormat.Loaded a = AdapterFormat.read(adapter, base);
      a.model().merge(a.values());
      ModelDirectory.export(out, base, model);
    }
    System.out.println("merged model written to " + out);
    return 0;
  }
}
