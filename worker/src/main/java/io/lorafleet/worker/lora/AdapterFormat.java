package io.lorafleet.worker.lora;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.worker.flat.FlatLayout;
import io.lorafleet.worker.model.Architecture;
import io.lorafleet.worker.model.BaseModel;
import io.lorafleet.worker.safetensors.SafetensorsReader;
import io.lorafleet.worker.safetensors.SafetensorsWriter;
import io.lorafleet.worker.safetensors.Tensor;
import io.lorafleet.worker.safetensors.TensorInfo;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * PEFT's on-disk adapter: adapter_config.json (asdict(LoraConfig), peft_type "LORA") and
 * adapter_model.safetensors with keys "base_model.model.&lt;module&gt;.lora_A.weight" (A r×in) and
 * ".lora_B.weight" (B out×r), fp32, metadata {"format": "pt"}. Output is deterministic, so writing
 * what was read gives identical bytes.
 */
public final class AdapterFormat {
  public static final String PREFIX = "base_model.model.";
  public static final String CONFIG = "adapter_config.json";
  public static final String WEIGHTS = "adapter_model.safetensors";

  static final ObjectMapper JSON = new ObjectMapper()
      .enable(SerializationFeature.INDENT_OUTPUT)
      .enable(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS);

  private AdapterFormat() {}

  /** An adapter read from disk: the model it binds to, its flat values and its safetensors metadata. */
  public record Loaded(LoraModel model, float[] values, Map<String, String> metadata) {}

  /** Writes the adapter into {@code dir} (created if absent); each file is replaced atomically. */
  public static void write(Path dir, LoraModel model, float[] flat, Map<String, String> metadata) throws IOException {
    if (flat.length != model.layout().size()) {
      throw new IllegalArgumentException("adapter values have " + flat.length + " floats but the layout needs " + model.layout().size());
    }
    Files.createDirectories(dir);
    Map<String, Tensor> tensors = new LinkedHashMap<>();
    for (FlatLayout.Slot s : model.layout().slots()) {
      tensors.put(s.key(), Tensor.ofFloats(model.layout().slice(flat, s), s.shape()));
    }
    Map<String, String> meta = new TreeMap<>(metadata);
    meta.put("format", "pt");
    SafetensorsWriter.write(dir.resolve(WEIGHTS), tensors, meta);
    writeJsonAtomically(dir.resolve(CONFIG), configJson(model));
  }

  public static void writeJsonAtomically(Path file, JsonNode json) throws IOException {
    Path tmp = Files.createTempFile(file.toAbsolutePath().getParent(), "." + file.getFileName(), ".tmp");
    try {
      Files.writeString(tmp, JSON.writeValueAsString(json) + "\n");
      Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    } finally {
      Files.deleteIfExists(tmp);
    }
  }

  /** adapter_config.json, as PEFT writes the model's method's config. */
  static ObjectNode configJson(LoraModel model) {
    return model.config().method().configJson(model);
  }

  /** asdict(LoraConfig) as PEFT writes it (peft/tuners/lora/config.py), less use_dora, which is the method's. */
  static ObjectNode loraConfigJson(LoraModel model) {
    LoraConfig c = model.config();
    ObjectNode n = JSON.createObjectNode();
    n.putObject("alpha_pattern").setAll(toNodes(c.alphaPattern()));
    n.putNull("auto_mapping");
    n.put("base_model_name_or_path", c.baseModelNameOrPath());
    n.put("bias", c.bias());
    n.put("fan_in_fan_out", model.structure().config().arch() == Architecture.GPT2);
    n.put("inference_mode", true);
    switch (c.initLoraWeights()) {
      case "gaussian" -> n.put("init_lora_weights", "gaussian");
      case "false" -> n.put("init_lora_weights", false);
      default -> n.put("init_lora_weights", true);
    }
    n.putNull("layers_pattern");
    putLayers(n, c);
    n.put("lora_alpha", c.loraAlpha());
    n.put("lora_dropout", c.loraDropout());
    putTask(n, model);
    n.put("peft_type", "LORA");
    n.put("r", c.r());
    n.putObject("rank_pattern").setAll(toNodes(c.rankPattern()));
    n.putNull("revision");
    putTargets(n, c);
    n.put("use_rslora", c.useRslora());
    return n;
  }

  /** task_type, and modules_to_save for an encoder: CAUSAL_LM and null, or SEQ_CLS and the modules trained whole (the head's by default). */
  static void putTask(ObjectNode n, LoraModel model) {
    List<String> heads = model.config().modulesToSave().isEmpty() ? modulesToSave(model.structure()) : model.config().modulesToSave();
    if (heads.isEmpty()) {
      n.putNull("modules_to_save");
    } else {
      heads.forEach(n.putArray("modules_to_save")::add);
    }
    n.put("task_type", heads.isEmpty() ? "CAUSAL_LM" : "SEQ_CLS");
    if (!heads.isEmpty()) { // the labels the head was trained for (transformers' names; PEFT passes over keys it does not know)
      io.lorafleet.worker.model.Labels.of(model.structure().config()).write(n);
    }
  }

  /**
   * The labels an adapter's head was trained for, as its adapter_config.json records them
   * (id2label, problem_type), or {@link io.lorafleet.worker.model.Labels#FROM_CONFIG} when it records
   * none: what a command reading the adapter loads its base with, so that no flag is needed.
   */
  public static io.lorafleet.worker.model.Labels labels(Path adapterDir) {
    Path f = adapterDir.resolve(CONFIG);
    if (!Files.isRegularFile(f)) {
      return io.lorafleet.worker.model.Labels.FROM_CONFIG;
    }
    try {
      return io.lorafleet.worker.model.Labels.read(JSON.readTree(f.toFile()));
    } catch (IOException | IllegalArgumentException e) {
      throw new IllegalArgumentException(f + ": cannot read its labels: " + e.getMessage(), e);
    }
  }

  static void putLayers(ObjectNode n, LoraConfig c) {
    if (c.layersToTransform().isEmpty()) {
      n.putNull("layers_to_transform");
    } else {
      ArrayNode l = n.putArray("layers_to_transform");
      c.layersToTransform().forEach(l::add);
    }
  }

  static void putTargets(ObjectNode n, LoraConfig c) {
    if (c.targetRegex()) {
      n.put("target_modules", c.targetModules().get(0));
    } else if (c.targetModules().equals(List.of("all-linear"))) {
      n.put("target_modules", "all-linear");
    } else {
      ArrayNode t = n.putArray("target_modules");
      new TreeSet<>(c.targetModules()).forEach(t::add);
    }
  }

  private static Map<String, JsonNode> toNodes(Map<String, ? extends Number> m) {
    Map<String, JsonNode> out = new TreeMap<>();
    m.forEach((k, v) -> out.put(k, v instanceof Integer i ? JSON.getNodeFactory().numberNode(i) : JSON.getNodeFactory().numberNode(v.doubleValue())));
    return out;
  }

  /** What every LoRA-family adapter_config.json holds alike, parsed once: its targets, its layers and its base. */
  public record Fields(List<String> targets, boolean regex, List<Integer> layers, String baseModel) {
    /**
     * LoRA's config with these fields and {@code n}'s own: r, lora_alpha, lora_dropout, the rank and
     * alpha patterns (an array in rank_pattern is AdaLoRA's allocation, its method's to read), bias,
     * use_rslora and init_lora_weights.
     */
    public LoraConfig lora(JsonNode n) {
      Map<String, Integer> ranks = new TreeMap<>();
      n.path("rank_pattern").fields().forEachRemaining(e -> {
        if (!e.getValue().isArray()) {
          ranks.put(e.getKey(), e.getValue().asInt());
        }
      });
      Map<String, Double> alphas = new TreeMap<>();
      n.path("alpha_pattern").fields().forEachRemaining(e -> alphas.put(e.getKey(), e.getValue().asDouble()));
      JsonNode init = n.get("init_lora_weights");
      return LoraConfig.of(n.path("r").asInt(8), n.path("lora_alpha").asDouble(8), targets).withTargets(targets, regex)
          .withDropout(n.path("lora_dropout").asDouble(0)).withLayers(layers).withPatterns(ranks, alphas).withBias(n.path("bias").asText("none"))
          .withRslora(n.path("use_rslora").asBoolean(false)).withBaseModel(baseModel).withInit(init == null || init.isNull() ? "true" : init.asText());
    }
  }

  /**
   * PEFT options that change what the adapter computes or holds: applying the adapter without them
   * would silently give another model, so each is refused by name.
   */
  private static void refuseUnsupported(Path f, JsonNode n) {
    JsonNode lp = n.get("layers_pattern");
    if (lp != null && !lp.isNull() && !(lp.isContainerNode() && lp.isEmpty())) {
      throw new IllegalArgumentException(f + ": layers_pattern is " + lp + "; this PEFT option is not supported, expected null (lorafleet "
          + "numbers the layers of the model's own decoder stack)");
    }
    if (n.path("lora_bias").asBoolean(false)) {
      throw new IllegalArgumentException(f + ": lora_bias is true; adapters with a bias on lora_B are not supported, expected false");
    }
    for (String field : List.of("exclude_modules", "layer_replication", "trainable_token_indices")) { // modules_to_save: see read
      JsonNode v = n.get(field);
      if (v != null && !v.isNull() && !(v.isContainerNode() && v.isEmpty())) {
        throw new IllegalArgumentException(f + ": " + field + " is " + v + "; this PEFT option is not supported, expected null");
      }
    }
  }

  /** Reads adapter_config.json into a LoraConfig; unknown keys are ignored, as PEFT does. */
  public static LoraConfig readConfig(Path dir) {
    Path f = dir.resolve(CONFIG);
    JsonNode n;
    try {
      n = JSON.readTree(f.toFile());
    } catch (IOException e) {
      throw new IllegalArgumentException(f + ": cannot read adapter config: " + e.getMessage(), e);
    }
    if (n == null || !n.isObject()) {
      throw new IllegalArgumentException(f + ": must hold a JSON object");
    }
    PeftMethod.Provider method = PeftMethods.forConfig(f, n);
    refuseUnsupported(f, n);
    JsonNode tm = n.get("target_modules");
    List<String> targets = new ArrayList<>();
    boolean regex = false;
    if (tm != null && tm.isArray()) {
      tm.forEach(x -> targets.add(x.asText()));
    } else if (tm != null && tm.isTextual()) {
      targets.add(tm.asText());
      regex = !tm.asText().equals("all-linear");
    } else {
      throw new IllegalArgumentException(f + ": target_modules must be a list or a string but found " + tm);
    }
    List<Integer> layers = new ArrayList<>();
    JsonNode lt = n.get("layers_to_transform");
    if (lt != null && lt.isInt()) {
      layers.add(lt.asInt());
    } else if (lt != null && lt.isArray()) {
      lt.forEach(x -> layers.add(x.asInt()));
    }
    try {
      return method.read(f, n, new Fields(targets, regex, layers, n.path("base_model_name_or_path").asText(""))).withModulesToSave(listedModulesToSave(f, n));
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException(f + ": " + e.getMessage(), e);
    }
  }

  /** The modules an encoder's head tensors belong to ("classifier", "pooler"), as PEFT's modules_to_save names them; none for a causal LM. */
  static List<String> modulesToSave(BaseModel base) {
    return base.headTensors().stream().map(t -> t.substring(0, t.indexOf('.'))).distinct().toList();
  }

  /**
   * A modules_to_save key as PEFT holds it in memory or older PEFT saved it
   * (…classifier.modules_to_save[.default].dense.weight) in the form PEFT saves today and lorafleet
   * writes (…classifier.dense.weight).
   */
  static String unwrapModulesToSave(String key) {
    return key.replace(".modules_to_save.default.", ".").replace(".modules_to_save.", ".");
  }

  /**
   * modules_to_save as listed, less "score", which PEFT's SEQ_CLS models add on their own and which
   * names nothing in these encoders. What the list names is checked against the base where the
   * adapter is built on it ({@link LoraModel#create}); the head alone reads as the default.
   */
  private static List<String> listedModulesToSave(Path f, JsonNode n) {
    JsonNode v = n.get("modules_to_save");
    List<String> listed = new ArrayList<>();
    if (v != null && v.isArray()) {
      v.forEach(x -> listed.add(x.asText()));
    } else if (v != null && !v.isNull()) {
      throw new IllegalArgumentException(f + ": modules_to_save is " + v + ", expected a list of module names or null");
    }
    listed.remove("score");
    return listed.equals(List.of("classifier")) ? List.of() : listed;
  }

  /** Reads an adapter for {@code base}, checking every tensor's presence and shape against it. */
  public static Loaded read(Path dir, BaseModel base) {
    LoraConfig config = readConfig(dir);
    LoraModel model;
    try {
      model = LoraModel.create(base, config);
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException(dir.resolve(CONFIG) + ": adapter does not fit the base model: " + e.getMessage(), e);
    }
    Path wf = dir.resolve(WEIGHTS);
    if (!Files.isRegularFile(wf)) {
      throw new IllegalArgumentException(dir + ": " + WEIGHTS + " is missing");
    }
    SafetensorsReader r = SafetensorsReader.open(wf);
    Map<String, String> keys = new LinkedHashMap<>();
    for (TensorInfo t : r.tensors().values()) {
      String k = unwrapModulesToSave(t.name().replace(".lora_A.default.weight", ".lora_A.weight").replace(".lora_B.default.weight", ".lora_B.weight"));
      // Adapters from lorafleet 0.1 named an adapted projection's bias without PEFT's base_layer.
      String wrapped = k.endsWith(".bias") ? k.substring(0, k.length() - ".bias".length()) + ".base_layer.bias" : k;
      if (model.layout().slot(k).isEmpty() && model.layout().slot(wrapped).isPresent()) {
        k = wrapped;
      }
      keys.put(k, t.name());
    }
    // Every tensor is checked against the header before anything is allocated: a config with an
    // absurd r (or rank_pattern) fails here, naming the tensor, instead of allocating its layout.
    Set<String> used = new HashSet<>();
    for (FlatLayout.Slot s : model.layout().slots()) {
      String key = keys.get(s.key());
      if (key == null) {
        throw new IllegalArgumentException(wf + ": missing tensor '" + s.key() + "' that adapter_config.json implies for this base model");
      }
      long[] shape = r.info(key).orElseThrow().shape();
      if (!Arrays.equals(shape, s.shape())) {
        throw new IllegalArgumentException(wf + ": tensor '" + key + "' has shape " + Arrays.toString(shape)
            + " but adapter_config.json and the base model imply " + Arrays.toString(s.shape()));
      }
      used.add(s.key());
    }
    float[] flat = new float[model.layout().size()];
    for (FlatLayout.Slot s : model.layout().slots()) {
      System.arraycopy(r.read(keys.get(s.key())).toFloatArray(), 0, flat, s.offset(), s.size());
    }
    for (String k : keys.keySet()) {
      if (!used.contains(k)) {
        throw new IllegalArgumentException(wf + ": tensor '" + keys.get(k) + "' names a module this base model lacks or the config does not target");
      }
    }
    Map<String, String> meta = new TreeMap<>(r.metadata());
    meta.remove("format");
    return new Loaded(model, flat, meta);
  }
}
