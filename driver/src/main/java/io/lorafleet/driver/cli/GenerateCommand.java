package io.lorafleet.driver.cli;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.worker.generate.Generator;
import io.lorafleet.worker.generate.Sampling;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "generate", mixinStandardHelpOptions = true, description = "Generate from the base model and any number of adapters (the base is "
    + "loaded once): --prompt with every adapter in turn, or --input, a JSONL file whose rows name their adapter, batched together.")
final class GenerateCommand implements Callable<Integer> {
  /** PEFT's name for "no adapter" in a batch of mixed adapters. */
  static final String BASE = "__base__";

  @Option(names = "--model", description = "base model directory", required = true) Path model;
  @Option(names = "--adapter", paramLabel = "[NAME=]DIR", description = "an adapter directory, optionally named (default name: the directory's); "
      + "repeatable") List<String> adapters = new ArrayList<>();
  @Option(names = "--prompt", description = "prompt text (repeatable): generated with the base and with every adapter in turn") List<String> prompts =
      new ArrayList<>();
  @Option(names = "--input", description = "a JSONL file of {\"prompt\", \"adapter\" (a name or __base__), \"max_new_tokens\"}, with optional "
      + "\"temperature\", \"top_p\" and \"seed\"; greedy rows are batched together whatever their adapter") Path input;
  @Option(names = "--out", description = "with --input: the JSONL file to write, each input row plus \"completion\" and \"completion_tokens\", in "
      + "input order") Path out;
  @Option(names = "--overwrite", description = "replace --out if it exists") boolean overwrite;
  @Option(names = "--batch-size", description = "with --input: greedy rows per forward batch", defaultValue = "16") int batchSize;
  @Option(names = "--max-new-tokens", description = "tokens to generate per prompt (a row's max_new_tokens wins)", defaultValue = "32") int maxNew;
  @Option(names = "--temperature", description = "sampling temperature (0: greedy)", defaultValue = "0") double temperature;
  @Option(names = "--top-p", description = "nucleus sampling mass", defaultValue = "1.0") double topP;
  @Option(names = "--seed", description = "seed of the sampler", defaultValue = "0") long seed;
  @picocli.CommandLine.Mixin QuantizeOptions quantize;

  private static final ObjectMapper JSON = new ObjectMapper();

  /** --adapter values, NAME=DIR or DIR, by name in the order given. */
  static Map<String, Path> named(List<String> adapters) {
    Map<String, Path> out = new LinkedHashMap<>();
    for (String a : adapters) {
      int eq = a.indexOf('=');
      String name = eq > 0 ? a.substring(0, eq) : Path.of(a).getFileName().toString();
      Path dir = Path.of(eq > 0 ? a.substring(eq + 1) : a);
      if (name.equals(BASE) || out.put(name, dir) != null) {
        throw new IllegalArgumentException("--adapter " + a + ": the name '" + name + "' is " + (name.equals(BASE) ? "reserved for the base"
            : "given twice") + "; name adapters NAME=DIR");
      }
    }
    return out;
  }

  @Override
  public Integer call() throws IOException {
    if ((input == null) == prompts.isEmpty()) {
      throw new IllegalArgumentException("give either --prompt or --input (with --out)");
    }
    if (input != null && out == null) {
      throw new IllegalArgumentException("--input needs --out, the JSONL file to write");
    }
    if (out != null && Files.exists(out) && !overwrite) {
      throw new IllegalArgumentException("--out " + out + " exists; give --overwrite to replace it");
    }
    Map<String, Path> named = named(adapters);
    List<ObjectNode> rows = input == null ? List.of() : readRows(input, named);
    try (LanguageModel base = LanguageModel.load(model, Device.cpu(), DataType.FLOAT32, quantize.quantization()); Tokenizer tok = Tokenizer.load(model)) {
      Map<String, AdapterFormat.Loaded> loaded = new LinkedHashMap<>();
      named.forEach((n, d) -> loaded.put(n, AdapterFormat.read(d, base)));
      if (input == null) {
        Sampling s = new Sampling(maxNew, temperature, topP, seed);
        List<Optional<String>> runs = new ArrayList<>();
        runs.add(Optional.empty());
        loaded.keySet().forEach(n -> runs.add(Optional.of(n)));
        for (Optional<String> a : runs) {
          System.out.println("== " + a.map(n -> named.get(n).toString()).orElse("base"));
          for (String prompt : prompts) {
            Optional<AdapterFormat.Loaded> l = a.map(loaded::get);
            int[] gen = Generator.generate(base, l, tok.encodePrompt(prompt), s, tok.eos());
            System.out.println(prompt + " => " + tok.decode(gen));
          }
        }
        return 0;
      }
      complete(base, tok, new ArrayList<>(loaded.values()), new ArrayList<>(loaded.keySet()), rows);
    }
    Path tmp = Files.createTempFile(out.toAbsolutePath().getParent(), ".generate", ".tmp");
    try (var w = Files.newBufferedWriter(tmp)) {
      for (ObjectNode r : rows) {
        w.write(JSON.writeValueAsString(r));
        w.write('\n');
      }
    }
    Files.move(tmp, out, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    io.lorafleet.driver.report.Progress.say("wrote " + rows.size() + " completions to " + out);
    return 0;
  }

  /** Fills each row's completion: greedy rows in mixed-adapter batches of --batch-size, sampled rows one by one with their seed. */
  void complete(LanguageModel base, Tokenizer tok, List<AdapterFormat.Loaded> adapters, List<String> names, List<ObjectNode> rows) {
    int stop = tok.eos().orElse(-1);
    List<Integer> greedy = new ArrayList<>();
    for (int i = 0; i < rows.size(); i++) {
      ObjectNode r = rows.get(i);
      int k = names.indexOf(r.path("adapter").asText(BASE));
      if (r.path("temperature").asDouble(temperature) == 0) {
        greedy.add(i);
        continue;
      }
      Optional<AdapterFormat.Loaded> l = k < 0 ? Optional.empty() : Optional.of(adapters.get(k));
      Sampling s = new Sampling(r.path("max_new_tokens").asInt(maxNew), r.path("temperature").asDouble(temperature), r.path("top_p").asDouble(topP),
          r.path("seed").asLong(seed));
      fill(r, tok, Generator.generate(base, l, tok.encodePrompt(r.get("prompt").asText()), s, tok.eos()));
    }
    for (int from = 0; from < greedy.size(); from += batchSize) {
      List<Integer> chunk = greedy.subList(from, Math.min(greedy.size(), from + batchSize));
      int[][] ps = new int[chunk.size()][];
      int[] ks = new int[chunk.size()];
      int[] mn = new int[chunk.size()];
      int[] st = new int[chunk.size()];
      for (int j = 0; j < chunk.size(); j++) {
        ObjectNode r = rows.get(chunk.get(j));
        ps[j] = tok.encodePrompt(r.get("prompt").asText());
        ks[j] = names.indexOf(r.path("adapter").asText(BASE));
        mn[j] = r.path("max_new_tokens").asInt(maxNew);
        st[j] = stop;
      }
      int[][] gen = Generator.greedyMixed(base, adapters, ks, ps, mn, st);
      for (int j = 0; j < chunk.size(); j++) {
        fill(rows.get(chunk.get(j)), tok, gen[j]);
      }
    }
  }

  private static void fill(ObjectNode row, Tokenizer tok, int[] gen) {
    row.put("completion", tok.decode(gen));
    row.put("completion_tokens", gen.length);
  }

  /** The input rows, each checked: a string prompt, a loaded adapter or __base__, and parameters in range; errors name the line and field. */
  static List<ObjectNode> readRows(Path input, Map<String, Path> named) throws IOException {
    List<ObjectNode> rows = new ArrayList<>();
    List<String> lines = Files.readAllLines(input);
    for (int n = 0; n < lines.size(); n++) {
      if (lines.get(n).isBlank()) {
        continue;
      }
      String where = input + " line " + (n + 1);
      JsonNode j;
      try {
        j = JSON.readTree(lines.get(n));
      } catch (IOException e) {
        throw new IllegalArgumentException(where + ": not JSON: " + e.getMessage().split("\n")[0]);
      }
      if (!(j instanceof ObjectNode o) || !o.path("prompt").isTextual() || o.get("prompt").asText().isEmpty()) {
        throw new IllegalArgumentException(where + ": expected an object with a non-empty string \"prompt\"");
      }
      String a = o.path("adapter").asText(BASE);
      if (!a.equals(BASE) && !named.containsKey(a)) {
        throw new IllegalArgumentException(where + ": \"adapter\" is '" + a + "' but the adapters given are " + named.keySet() + " (or " + BASE + ")");
      }
      if (o.has("max_new_tokens") && !(o.get("max_new_tokens").canConvertToInt() && o.get("max_new_tokens").asInt() > 0)) {
        throw new IllegalArgumentException(where + ": \"max_new_tokens\" must be an integer > 0 but found " + o.get("max_new_tokens"));
      }
      if (o.has("temperature") && !(o.get("temperature").isNumber() && o.get("temperature").asDouble() >= 0)) {
        throw new IllegalArgumentException(where + ": \"temperature\" must be a number >= 0 but found " + o.get("temperature"));
      }
      if (o.has("top_p") && !(o.get("top_p").isNumber() && o.get("top_p").asDouble() > 0 && o.get("top_p").asDouble() <= 1)) {
        throw new IllegalArgumentException(where + ": \"top_p\" must be in (0, 1] but found " + o.get("top_p"));
      }
      if (o.has("seed") && !o.get("seed").canConvertToLong()) {
        throw new IllegalArgumentException(where + ": \"seed\" must be an integer but found " + o.get("seed"));
      }
      rows.add(o);
    }
    return rows;
  }
}
