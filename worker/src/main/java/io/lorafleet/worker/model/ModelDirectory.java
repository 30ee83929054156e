package io.lorafleet.worker.model;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.worker.safetensors.DType;
import io.lorafleet.worker.safetensors.SafetensorsWriter;
import io.lorafleet.worker.safetensors.Tensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/** Writes Hugging Face model directories: config.json, model.safetensors and the tokenizer files. */
public final class ModelDirectory {
  /** Tokenizer files copied alongside weights when present in the source. */
  public static final List<String> TOKENIZER_FILES = List.of("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json");

  private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

  private ModelDirectory() {}

  /** Writes config.json and model.safetensors (with metadata {"format": "pt"}). */
  public static void write(Path dir, ObjectNode config, Map<String, Tensor> tensors) throws IOException {
    write(dir, config, tensors, Long.MAX_VALUE);
  }

  /**
   * Writes config.json and the tensors, as transformers' save_pretrained shards them: one
   * model.safetensors when they fit in {@code maxShardBytes}, else model-0000i-of-0000n.safetensors
   * filled in order (a tensor larger than the limit gets a shard of its own) and
   * model.safetensors.index.json ({"metadata": {"total_size"}, "weight_map"}).
   */
  public static void write(Path dir, ObjectNode config, Map<String, Tensor> tensors, long maxShardBytes) throws IOException {
    Files.createDirectories(dir);
    List<Map<String, Tensor>> shards = new java.util.ArrayList<>();
    long size = 0;
    long total = 0;
    for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
      long b = e.getValue().data().length;
      if (shards.isEmpty() || size > 0 && size + b > maxShardBytes) {
        shards.add(new LinkedHashMap<>());
        size = 0;
      }
      shards.get(shards.size() - 1).put(e.getKey(), e.getValue());
      size += b;
      total += b;
    }
    if (shards.size() <= 1) {
      SafetensorsWriter.write(dir.resolve(HfDirectory.SAFETENSORS), tensors, Map.of("format", "pt"));
    } else {
      ObjectNode index = JSON.createObjectNode();
      index.putObject("metadata").put("total_size", total);
      ObjectNode map = index.putObject("weight_map");
      for (int i = 0; i < shards.size(); i++) {
        String name = String.format(java.util.Locale.ROOT, "model-%05d-of-%05d.safetensors", i + 1, shards.size());
        SafetensorsWriter.write(dir.resolve(name), shards.get(i), Map.of("format", "pt"));
        shards.get(i).keySet().forEach(k -> map.put(k, name));
      }
      Files.writeString(dir.resolve(HfDirectory.SAFETENSORS_INDEX), JSON.writeValueAsString(index) + "\n");
    }
    Path tmp = Files.createTempFile(dir, ".config", ".tmp");
    Files.writeString(tmp, JSON.writeValueAsString(config) + "\n");
    Files.move(tmp, dir.resolve("config.json"), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
  }

  /** Writes a model's current base tensors (e.g. after a merge) in fp32 with the config it was loaded with. */
  public static void export(Path dir, LanguageModel model, Path tokenizerSource) throws IOException {
    export(dir, model, tokenizerSource, DType.F32);
  }

  /**
   * Writes a model's current base tensors in {@code dtype} (F32, F16 or BF16, rounded to nearest
   * even), with the config it was loaded with, less any quantization_config: a quantized base is
   * written dequantized, as full precision.
   */
  public static void export(Path dir, LanguageModel model, Path tokenizerSource, DType dtype) throws IOException {
    export(dir, model, tokenizerSource, dtype, Long.MAX_VALUE);
  }

  /** As {@link #export(Path, LanguageModel, Path, DType)}, sharded past {@code maxShardBytes} (see {@link #write(Path, ObjectNode, Map, long)}). */
  public static void export(Path dir, LanguageModel model, Path tokenizerSource, DType dtype, long maxShardBytes) throws IOException {
    if (dtype != DType.F32 && dtype != DType.F16 && dtype != DType.BF16) {
      throw new IllegalArgumentException("export dtype must be F32, F16 or BF16 but found " + dtype);
    }
    Map<String, Tensor> tensors = new LinkedHashMap<>();
    for (ParamSpec p : model.params()) {
      tensors.put(p.name(), convert(model.hfTensor(p.name()), dtype));
    }
    ObjectNode config = model.config().raw().deepCopy();
    config.remove("quantization_config");
    if (model.config().arch().encoder()) { // a base saved for masked LM (roberta-base) exports as the classifier it now is
      config.putArray("architectures").add(model.backbone().sequenceClassifierClass(model.config()));
    }
    write(dir, config.put("torch_dtype", dtype.torchName()), tensors, maxShardBytes);
    for (String f : TOKENIZER_FILES) {
      Path src = tokenizerSource.resolve(f);
      if (Files.isRegularFile(src)) {
        Files.copy(src, dir.resolve(f), StandardCopyOption.REPLACE_EXISTING);
      }
    }
  }

  /** An fp32 tensor in F32, F16 or BF16 (round to nearest even). */
  static Tensor convert(Tensor t, DType dtype) {
    if (dtype == DType.F32) {
      return t;
    }
    float[] v = t.toFloatArray();
    java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(v.length * 2).order(java.nio.ByteOrder.LITTLE_ENDIAN);
    for (float x : v) {
      b.putShort(dtype == DType.F16 ? io.lorafleet.worker.safetensors.Half.floatToF16(x) : io.lorafleet.worker.safetensors.Half.floatToBf16(x));
    }
    return new Tensor(dtype, t.shape(), b.array());
  }

  /**
   * Random weights for a config, as transformers' _init_weights does: N(0, 0.02) for projections and
   * embeddings, ones for norm scales, zeros for biases.
   */
  public static Map<String, Tensor> randomTensors(ModelConfig config, long seed) {
    Map<String, Tensor> out = new LinkedHashMap<>();
    Random rng = new Random(seed);
    Backbone d = Backbone.of(config);
    for (ParamSpec p : d.params(config)) {
      float[] v = new float[(int) p.numel()];
      boolean norm = p.name().toLowerCase(java.util.Locale.ROOT).contains("norm") || p.name().contains("ln_");
      if (p.name().endsWith(".bias")) {
        // zeros
      } else if (norm) {
        java.util.Arrays.fill(v, 1f);
      } else {
        for (int i = 0; i < v.length; i++) {
          v[i] = (float) (rng.nextGaussian() * 0.02);
        }
      }
      out.put(p.name(), Tensor.ofFloats(v, p.hfShape()));
    }
    return out;
  }

  /**
   * init-model: a randomly initialised model of the given shape with a word-level tokenizer over
   * {@code words}, in exactly the HF layout. The vocabulary size is that of the tokenizer.
   */
  public static ModelConfig initModel(Path dir, TinyModelSpec spec, java.util.List<String> words, long seed) throws IOException {
    return initModel(dir, spec, words, seed, List.of());
  }

  /**
   * As {@link #initModel(Path, TinyModelSpec, List, long)}; an encoder's classes are {@code labels}
   * (id2label and label2id; one label makes a regression head), or LABEL_0 and LABEL_1 when empty.
   */
  public static ModelConfig initModel(Path dir, TinyModelSpec spec, java.util.List<String> words, long seed, List<String> labels) throws IOException {
    var specials = switch (spec.modelType()) {
      case "roberta", "xlm-roberta" -> io.lorafleet.worker.tokenizer.TokenizerFiles.Specials.ROBERTA;
      case "deberta-v2", "bert", "distilbert" -> io.lorafleet.worker.tokenizer.TokenizerFiles.Specials.CLS_SEP;
      default -> io.lorafleet.worker.tokenizer.TokenizerFiles.Specials.BOS;
    };
    int vocab = io.lorafleet.worker.tokenizer.TokenizerFiles.writeWordLevel(dir, words, specials);
    TinyModelSpec sized = spec.withVocab(vocab);
    ObjectNode cfgJson = sized.configJson(io.lorafleet.worker.tokenizer.TokenizerFiles.BOS, io.lorafleet.worker.tokenizer.TokenizerFiles.EOS);
    if (!labels.isEmpty()) {
      if (!cfgJson.has("id2label")) {
        throw new IllegalArgumentException("--labels applies to the sequence classifiers (" + Architecture.encoderModelTypes() + "), not " + spec.modelType());
      }
      if (labels.stream().distinct().count() != labels.size()) {
        throw new IllegalArgumentException("--labels must name each class once but found " + labels);
      }
      ObjectNode id2label = cfgJson.putObject("id2label");
      ObjectNode label2id = cfgJson.putObject("label2id");
      for (int i = 0; i < labels.size(); i++) {
        id2label.put(Integer.toString(i), labels.get(i));
        label2id.put(labels.get(i), i);
      }
      cfgJson.put("problem_type", labels.size() == 1 ? "regression" : "single_label_classification");
    }
    ModelConfig config = ModelConfig.fromJson(cfgJson, dir.resolve("config.json").toString());
    write(dir, cfgJson, randomTensors(config, seed));
    return config;
  }
}
