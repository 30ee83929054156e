package io.lorafleet.driver.cli;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.worker.generate.Generator;
import io.lorafleet.worker.generate.Sampling;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.model.CausalLM;
import io.lorafleet.worker.tokenizer.Tokenizer;
import io.lorafleet.worker.train.Trainable;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "generate", mixinStandardHelpOptions = true, description = "Generate from the base model, with any number of adapters in turn (the base is loaded once).")
final class GenerateCommand implements Callable<Integer> {
  @Option(names = "--model", description = "base model directory", required = true) Path model;
  @Option(names = "--adapter", description = "adapter directories; repeat to compare") List<Path> adapters = new ArrayList<>();
  @Option(names = "--prompt", description = "prompt text (repeatable)", required = true) List<String> prompts;
  @Option(names = "--max-new-tokens", description = "tokens to generate per prompt", defaultValue = "32") int maxNew;
  @Option(names = "--temperature", description = "sampling temperature (0: greedy)", defaultValue = "0") double temperature;
  @Option(names = "--top-p", description = "nucleus sampling mass", defaultValue = "1.0") double topP;
  @Option(names = "--seed", description = "seed of the sampler", defaultValue = "0") long seed;
  @picocli.CommandLine.Mixin QuantizeOptions quantize;

  @Override
  public Integer call() {
    Sampling s = new Sampling(maxNew, temperature, topP, seed);
    try (CausalLM base = CausalLM.load(model, Device.cpu(), DataType.FLOAT32, quantize.quantization()); Tokenizer tok = Tokenizer.load(model)) {
      List<Optional<Path>> runs = new ArrayList<>();
      runs.add(Optional.empty());
      adapters.forEach(a -> runs.add(Optional.of(a)));
      for (Optional<Path> a : runs) {
        Optional<AdapterFormat.Loaded> loaded = a.map(p -> AdapterFormat.read(p, base));
        System.out.println("== " + a.map(Path::toString).orElse("base"));
        for (String prompt : prompts) {
          int[] ids = tok.encodePrompt(prompt);
          int[] gen = Generator.generate(base, loaded.map(l -> (Trainable) l.model()), loaded.map(AdapterFormat.Loaded::values).orElse(new float[0]), ids, s, tok.eos());
          System.out.println(prompt + " => " + tok.decode(gen));
        }
      }
    }
    return 0;
  }

}
