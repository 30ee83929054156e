package io.lorafleet.worker.model;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.lorafleet.worker.quant.GptqTensor;
import io.lorafleet.worker.quant.Nf4Tensor;
import io.lorafleet.worker.quant.Quantization;
import io.lorafleet.worker.quant.QuantizedCheckpoint;
import io.lorafleet.worker.quant.QuantizedLinear;
import io.lorafleet.worker.safetensors.SafetensorsReader;
import io.lorafleet.worker.safetensors.Tensor;
import io.lorafleet.worker.safetensors.TensorInfo;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.function.Function;

/**
 * A Hugging Face model directory as lorafleet reads it: config.json, the weights in
 * model.safetensors or shards listed by model.safetensors.index.json (each shard checked to hold
 * what the index says), checkpoints stored quantized (bitsandbytes NF4, GPTQ INT4), and the key
 * spellings transformers accepts (GPT-2 with or without "transformer.", encoders with or without
 * their model prefix). Every error names the directory or file and the tensor.
 */
public final class HfDirectory {
  public static final String SAFETENSORS = "model.safetensors";
  public static final String SAFETENSORS_INDEX = "model.safetensors.index.json";

  private HfDirectory() {}

  /**
   * Loads an HF model directory, quantizing its projections (not embeddings, norms or lm_head) as
   * {@code quantize} says. A checkpoint stored quantized (bitsandbytes NF4, GPTQ INT4; see
   * {@link QuantizedCheckpoint}) is read as stored, and {@code quantize} must then be none.
   */
  static LanguageModel load(Path given, Device device, DataType dtype, Quantization quantize, Labels labels) {
    Path dir = modelDir(given);
    Path configFile = requireFile(dir, "config.json");
    Map<String, SafetensorsReader> weights = openWeights(dir);
    ModelConfig config = withLabels(ModelConfig.read(configFile), labels, weights.keySet(), dir.toString());
    QuantizedCheckpoint stored = QuantizedCheckpoint.of(config.raw(), configFile.toString());
    if (quantize.on() && !(stored instanceof QuantizedCheckpoint.None)) {
      throw new IllegalArgumentException(dir + " is stored quantized (quantization_config.quant_method "
          + config.raw().path("quantization_config").path("quant_method") + "); it cannot be quantized again with --quantize " + quantize.method()
          + ", drop --quantize");
    }
    Map<String, SafetensorsReader> byTensor = weights;
    Function<String, Optional<Tensor>> get = k -> Optional.ofNullable(byTensor.get(k)).map(r -> r.read(k));
    NDManager m = Djl.newManager(device, "causal-lm:" + dir.getFileName());
    String tag = quantize.on() ? quantize.tag() : stored.tag();
    try {
      return new LanguageModel(config, m, dtype, tag, new LanguageModel.Source() {
        @Override
        public Optional<QuantizedLinear> quantized(LinearSpec l, ParamSpec p) {
          String where = Optional.ofNullable(byTensor.get(p.name())).map(r -> r.file().toString()).orElse(dir.toString());
          long[] outIn = {l.out(), l.in()};
          if (stored instanceof QuantizedCheckpoint.Bnb4 && byTensor.containsKey(p.name() + Nf4Tensor.STATE_KEY)) {
            return Optional.of(Nf4Tensor.fromTensors(p.name(), get, outIn, where).upload(m));
          }
          if (stored instanceof QuantizedCheckpoint.Gptq g && byTensor.containsKey(l.name() + ".qweight")) {
            return Optional.of(GptqTensor.fromTensors(l.name(), get, l.out(), l.in(), g.config(), where).upload(m));
          }
          return atLoad(l, p, quantize, m);
        }

        @Override
        public float[] dense(ParamSpec p) {
          Optional<String> key = hfKeyCandidates(config, p.name()).stream().filter(byTensor::containsKey).findFirst();
          if (key.isEmpty()) {
            throw new IllegalArgumentException(dir + ": missing tensor '" + p.name() + "' (shape " + Arrays.toString(p.hfShape())
                + ") required by model_type " + config.modelType());
          }
          SafetensorsReader r = byTensor.get(key.get());
          return LanguageModel.checked(p, Optional.of(r.read(key.get())), r.file().toString());
        }

        @Override
        public boolean has(ParamSpec p) {
          return hfKeyCandidates(config, p.name()).stream().anyMatch(byTensor::containsKey);
        }
      });
    } catch (RuntimeException e) {
      m.close();
      throw e;
    }
  }

  /** sentence-transformers' older layout keeps the Hugging Face model in this subdirectory, beside modules.json and the pooling config. */
  public static final String SENTENCE_TRANSFORMERS_MODULE = io.lorafleet.worker.tokenizer.TokenizerFiles.SENTENCE_TRANSFORMERS_MODULE;

  /**
   * The Hugging Face model directory {@code dir} names: itself, or, for a sentence-transformers
   * directory of the older layout (no config.json of its own), its {@code 0_Transformer/}. Newer
   * sentence-transformers directories hold the model at their top, with its keys unprefixed.
   */
  public static Path modelDir(Path dir) {
    Path module = dir.resolve(SENTENCE_TRANSFORMERS_MODULE);
    return !Files.isRegularFile(dir.resolve("config.json")) && Files.isRegularFile(module.resolve("config.json")) ? module : dir;
  }

  static Path requireFile(Path dir, String name) {
    Path f = dir.resolve(name);
    if (!Files.isRegularFile(f)) {
      throw new IllegalArgumentException(dir + ": not a Hugging Face model directory, " + name + " is missing");
    }
    return f;
  }

  /** Maps every tensor name to the (single or sharded) safetensors file that holds it. */
  static Map<String, SafetensorsReader> openWeights(Path dir) {
    Map<String, SafetensorsReader> out = new HashMap<>();
    Path index = dir.resolve(SAFETENSORS_INDEX);
    if (Files.isRegularFile(index)) {
      JsonNode map;
      try {
        map = new ObjectMapper().readTree(index.toFile()).path("weight_map");
      } catch (IOException e) {
        throw new IllegalArgumentException(index + ": cannot parse: " + e.getMessage(), e);
      }
      if (!map.isObject()) {
        throw new IllegalArgumentException(index + ": field weight_map must be an object of tensor name to shard file");
      }
      Map<String, SafetensorsReader> shards = new HashMap<>();
      Path root = dir.toAbsolutePath().normalize();
      map.fields().forEachRemaining(e -> {
        String f = e.getValue().asText();
        Path shard = root.resolve(f).normalize();
        if (!e.getValue().isTextual() || f.isEmpty() || !shard.getParent().equals(root)) {
          throw new IllegalArgumentException(index + ": tensor '" + e.getKey() + "' is mapped to " + e.getValue()
              + ", expected the name of a file in the model directory " + dir);
        }
        SafetensorsReader r = shards.computeIfAbsent(f, x -> SafetensorsReader.open(requireFile(dir, x)));
        if (r.info(e.getKey()).isEmpty()) {
          throw new IllegalArgumentException(index + ": tensor '" + e.getKey() + "' is mapped to " + e.getValue().asText() + " but that file does not hold it");
        }
        out.put(e.getKey(), r);
      });
      return out;
    }
    Path single = dir.resolve(SAFETENSORS);
    if (!Files.isRegularFile(single)) {
      throw new IllegalArgumentException(dir + ": no weights found, expected " + SAFETENSORS + " or " + SAFETENSORS_INDEX);
    }
    SafetensorsReader r = SafetensorsReader.open(single);
    for (TensorInfo t : r.tensors().values()) {
      out.put(t.name(), r);
    }
    return out;
  }

  /** {@code c} with {@code labels} (see {@link Labels#check}): the checkpoint holding {@code keys} has a head when it holds every head tensor. */
  public static ModelConfig withLabels(ModelConfig c, Labels labels, java.util.Set<String> keys, String where) {
    if (labels.fromConfig()) {
      return c;
    }
    boolean hasHead = !Backbone.of(c).headParams(c).isEmpty()
        && Backbone.of(c).headParams(c).stream().allMatch(p -> hfKeyCandidates(c, p.name()).stream().anyMatch(keys::contains));
    return labels.check(c, hasHead, where);
  }

  /** GPT-2 checkpoints come with and without the "transformer." prefix. */
  static List<String> hfKeyCandidates(ModelConfig c, String name) {
    List<String> keys = new ArrayList<>(List.of(name));
    if (c.arch() == Architecture.GPT2 && name.startsWith("transformer.")) {
      keys.add(name.substring("transformer.".length()));
    }
    for (String prefix : List.of(RobertaEncoder.PREFIX, BertEncoder.PREFIX, DebertaV2Encoder.PREFIX, DistilBertEncoder.PREFIX)) { // the bare *Model classes save without it
      if (c.arch().encoder() && name.startsWith(prefix)) {
        keys.add(name.substring(prefix.length()));
      }
    }
    return keys;
  }
}
