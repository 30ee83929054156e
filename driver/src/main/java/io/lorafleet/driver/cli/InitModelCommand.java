package io.lorafleet.driver.cli;

import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.TinyModelSpec;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "init-model", mixinStandardHelpOptions = true, description = "Write a small randomly initialised HF model directory (config.json, model.safetensors, tokenizer.json).")
final class InitModelCommand implements Callable<Integer> {
  @Option(names = "--arch", required = true, description = "llama, mistral, qwen2, gpt2, gptj, or the sequence classifiers bert, roberta, xlm-roberta and deberta-v2") String arch;
  @Option(names = "--labels", split = ",", description = "a classifier's class names, in id order (id2label); one name makes a regression head; "
      + "default LABEL_0,LABEL_1") List<String> labels = new java.util.ArrayList<>();
  @Option(names = "--layers", description = "decoder layers", defaultValue = "2") int layers;
  @Option(names = "--hidden", description = "hidden size", defaultValue = "64") int hidden;
  @Option(names = "--heads", description = "attention heads", defaultValue = "4") int heads;
  @Option(names = "--kv-heads", description = "defaults to --heads") Integer kvHeads;
  @Option(names = "--intermediate", description = "defaults to 4 x hidden (gpt2, gptj and the encoders) or 8/3 x hidden (llama)") Integer intermediate;
  @Option(names = "--max-positions", description = "longest sequence the model accepts (max_position_embeddings)", defaultValue = "512") int maxPositions;
  @Option(names = "--vocab-file", required = true, description = "a text file whose whitespace-separated words form the word-level vocabulary") Path vocabFile;
  @Option(names = "--seed", description = "seed of the random weights", defaultValue = "0") long seed;
  @Option(names = "--out", description = "the HF model directory to write (config.json, model.safetensors, tokenizer.json)", required = true) Path out;

  @Override
  public Integer call() throws Exception {
    if (!Files.isRegularFile(vocabFile)) {
      throw new IllegalArgumentException("--vocab-file " + vocabFile + ": no such file");
    }
    List<String> words = Arrays.stream(Files.readString(vocabFile).split("\\s+")).filter(s -> !s.isEmpty()).distinct().toList();
    boolean fourX = List.of("gpt2", "gptj", "roberta", "xlm-roberta", "bert", "distilbert", "deberta-v2").contains(arch);
    int ffn = intermediate != null ? intermediate : fourX ? 4 * hidden : (8 * hidden / 3 + 7) / 8 * 8;
    TinyModelSpec spec = new TinyModelSpec(arch, layers, hidden, heads, kvHeads == null ? heads : kvHeads, ffn, 1, maxPositions, false);
    var c = ModelDirectory.initModel(out, spec, words, seed, labels);
    System.out.println("wrote " + c.modelType() + " model to " + out + " (vocab " + c.vocabSize() + ", hidden " + c.hidden() + ", layers " + c.layers() + ")");
    return 0;
  }
}
