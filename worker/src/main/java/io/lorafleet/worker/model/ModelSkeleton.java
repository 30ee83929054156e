package io.lorafleet.worker.model;

import io.lorafleet.worker.safetensors.SafetensorsReader;
import io.lorafleet.worker.safetensors.Tensor;
import io.lorafleet.worker.safetensors.TensorInfo;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.stream.Collectors;

/**
 * A model directory's structure without its weights: config.json plus the safetensors headers
 * (names, shapes, dtypes), checked as {@link LanguageModel#load} checks them, but with no tensor data read
 * (the headers of a 70B checkpoint are a few megabytes). A single small tensor can be read on
 * request. This is what the driver holds: its memory does not grow with the base.
 */
public final class ModelSkeleton implements BaseModel {
  private final String dir;
  private final ModelConfig config;
  private final List<ParamSpec> params;
  private final Map<String, ParamSpec> paramByName;
  private final List<LinearSpec> linears;
  private final Map<String, SafetensorsReader> byTensor;
  private final Map<String, String> keyOf;
  private final List<String> headTensors;
  private final List<String> initialized;

  private ModelSkeleton(String dir, ModelConfig config, Map<String, SafetensorsReader> byTensor) {
    this.dir = dir;
    this.config = config;
    Backbone decoder = Backbone.of(config);
    this.params = List.copyOf(decoder.params(config));
    this.paramByName = params.stream().collect(Collectors.toMap(ParamSpec::name, p -> p, (a, b) -> a, LinkedHashMap::new));
    this.linears = List.copyOf(decoder.linears(config));
    this.byTensor = byTensor;
    this.keyOf = new LinkedHashMap<>();
    this.headTensors = decoder.headParams(config).stream().map(ParamSpec::name).toList();
    this.initialized = decoder.initializedWhenMissing(config);
    io.lorafleet.worker.quant.QuantizedCheckpoint stored = io.lorafleet.worker.quant.QuantizedCheckpoint.of(config.raw(), dir + "/config.json");
    Map<String, LinearSpec> quantizable = new java.util.HashMap<>();
    linears.stream().filter(LinearSpec::quantizable).forEach(l -> quantizable.put(l.weightKey(), l));
    for (ParamSpec p : params) {
      LinearSpec l = quantizable.get(p.name());
      if (l != null && storedQuantized(stored, l, byTensor)) {
        continue; // its parts are checked where the weights are loaded; the driver never reads them
      }
      Optional<String> found = HfDirectory.hfKeyCandidates(config, p.name()).stream().filter(byTensor::containsKey).findFirst();
      if (found.isEmpty() && initialized.contains(p.name())) {
        continue; // a base without this task's head (or BERT's pooler): it is initialized where it is needed (HeadInit)
      }
      String key = found
          .orElseThrow(() -> new IllegalArgumentException(dir + ": missing tensor '" + p.name() + "' (shape " + Arrays.toString(p.hfShape())
              + ") required by model_type " + config.modelType()));
      TensorInfo t = byTensor.get(key).info(key).orElseThrow();
      if (!Arrays.equals(t.shape(), p.hfShape())) {
        throw new IllegalArgumentException(byTensor.get(key).file() + ": tensor '" + p.name() + "' has shape " + Arrays.toString(t.shape())
            + " but config.json implies " + Arrays.toString(p.hfShape()));
      }
      if (!t.dtype().isFloat()) {
        throw new IllegalArgumentException(byTensor.get(key).file() + ": tensor '" + p.name() + "' has dtype " + t.dtype()
            + ", expected F32, F16 or BF16");
      }
      keyOf.put(p.name(), key);
    }
    List<String> frozenMade = initialized.stream().filter(n -> !headTensors.contains(n) && !keyOf.containsKey(n)).toList();
    if (!frozenMade.isEmpty() && WARNED.add(dir)) {
      LOG.warn("{}: the checkpoint has no {} (sentence-embedding models such as all-MiniLM-L6-v2 save no pooler): it is initialized as "
          + "transformers initializes a missing module (normal(0, initializer_range), here seeded by its name) and stays frozen, as PEFT's SEQ_CLS "
          + "trains only the classifier; a merged model saves it", dir, frozenMade);
    }
  }

  private static final org.slf4j.Logger LOG = org.slf4j.LoggerFactory.getLogger(ModelSkeleton.class);
  private static final java.util.Set<String> WARNED = java.util.concurrent.ConcurrentHashMap.newKeySet();

  /** Whether the checkpoint holds projection {@code l} in a quantized form (bitsandbytes' quant_state, GPTQ's qweight). */
  private static boolean storedQuantized(io.lorafleet.worker.quant.QuantizedCheckpoint stored, LinearSpec l, Map<String, SafetensorsReader> byTensor) {
    return stored instanceof io.lorafleet.worker.quant.QuantizedCheckpoint.Bnb4 && byTensor.containsKey(l.weightKey() + io.lorafleet.worker.quant.Nf4Tensor.STATE_KEY)
        || stored instanceof io.lorafleet.worker.quant.QuantizedCheckpoint.Gptq && byTensor.containsKey(l.name() + ".qweight");
  }

  /** Reads config.json and every safetensors header of {@code dir}; no tensor data. */
  public static ModelSkeleton read(Path given) {
    return read(given, Labels.FROM_CONFIG);
  }

  /** As {@link #read(Path)}, a classifier with {@code labels} instead of config.json's. */
  public static ModelSkeleton read(Path given, Labels labels) {
    Path dir = HfDirectory.modelDir(given);
    ModelConfig config = ModelConfig.read(HfDirectory.requireFile(dir, "config.json"));
    Map<String, SafetensorsReader> weights = HfDirectory.openWeights(dir);
    return new ModelSkeleton(dir.toString(), HfDirectory.withLabels(config, labels, weights.keySet(), dir.toString()), weights);
  }

  /**
   * A skeleton from a config and opened safetensors headers, keyed by tensor name: for a model
   * that is not a local directory (a Hadoop URI whose headers were read remotely).
   */
  public static ModelSkeleton of(String where, ModelConfig config, Map<String, SafetensorsReader> byTensor) {
    return new ModelSkeleton(where, config, Map.copyOf(byTensor));
  }

  /** Where the model lives (a path or a URI). */
  public String dir() {
    return dir;
  }

  @Override
  public ModelConfig config() {
    return config;
  }

  @Override
  public List<ParamSpec> params() {
    return params;
  }

  @Override
  public Optional<ParamSpec> paramSpec(String name) {
    return Optional.ofNullable(paramByName.get(name));
  }

  @Override
  public List<LinearSpec> linears() {
    return linears;
  }

  /** The head tensors the checkpoint lacks, initialized where they are needed: a base whose head was never trained. */
  public List<String> untrainedHead() {
    return headTensors.stream().filter(n -> !keyOf.containsKey(n)).toList();
  }

  @Override
  public List<String> optionalTensors() {
    return initialized;
  }

  @Override
  public List<String> headTensors() {
    return headTensors;
  }

  @Override
  public Tensor hfTensor(String name) {
    String key = keyOf.get(name);
    if (key == null && initialized.contains(name)) {
      return HeadInit.tensor(config, paramByName.get(name));
    }
    if (key == null) {
      throw new IllegalArgumentException("no tensor named '" + name + "' in this " + config.modelType() + " model");
    }
    return byTensor.get(key).read(key);
  }
}
