package io.lorafleet.worker.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The fields of a Hugging Face {@code config.json} that the forward pass needs, normalised across
 * architectures (GPT-2's n_embd/n_layer/n_head map onto hidden/layers/heads). The raw JSON is kept
 * so a merged export writes back exactly what was read.
 *
 * <p>Rotary settings are read from either spelling: the top-level {@code rope_theta} and
 * {@code rope_scaling} of configs written before transformers 5, or the {@code rope_parameters}
 * object that transformers 5 writes instead. {@code slidingWindow} is 0 for full attention;
 * Mistral's {@code sliding_window} limits each query to the last that-many keys (itself included).
 */
public record ModelConfig(
    Architecture arch,
    String modelType,
    int vocabSize,
    int hidden,
    int layers,
    int heads,
    int kvHeads,
    int headDim,
    int intermediate,
    double normEps,
    double ropeTheta,
    RopeScaling ropeScaling,
    int maxPositions,
    int slidingWindow,
    boolean tieWordEmbeddings,
    boolean attentionBias,
    boolean mlpBias,
    ObjectNode raw) {

  public ModelConfig {
    check("vocab_size", vocabSize);
    check("hidden_size", hidden);
    check("num_hidden_layers", layers);
    check("num_attention_heads", heads);
    check("num_key_value_heads", kvHeads);
    check("head_dim", headDim);
    check("intermediate_size", intermediate);
    if (slidingWindow < 0) {
      throw new IllegalArgumentException("sliding_window must be > 0 or null but found " + slidingWindow);
    }
    if (heads % kvHeads != 0) {
      throw new IllegalArgumentException("num_attention_heads (" + heads + ") must be a multiple of num_key_value_heads (" + kvHeads + ")");
    }
    if (arch != Architecture.LLAMA && hidden != heads * headDim) {
      throw new IllegalArgumentException("n_embd (" + hidden + ") must be a multiple of n_head (" + heads + ")");
    }
    if (headDim % 2 != 0 && arch == Architecture.LLAMA) {
      throw new IllegalArgumentException("head_dim must be even for rotary embeddings but found " + headDim);
    }
  }

  /** Channels of each head that rotary embeddings turn: GPT-J's rotary_dim, else the whole head. */
  public int rotaryDim() {
    return arch == Architecture.GPTJ && raw.hasNonNull("rotary_dim") ? raw.get("rotary_dim").asInt() : headDim;
  }

  /**
   * An encoder's classes: the size of config.json's {@code id2label} when it has one, else
   * {@code num_labels}, else 2, as PretrainedConfig resolves them. 1 means regression.
   */
  public int numLabels() {
    if (raw.path("id2label").isObject() && raw.get("id2label").size() > 0) {
      return raw.get("id2label").size();
    }
    return raw.path("num_labels").asInt(2);
  }

  /** Whether the head regresses one value (num_labels 1, MSE) rather than classifying (cross-entropy). */
  public boolean regression() {
    return numLabels() == 1;
  }

  /** The class names by id, from {@code id2label} (keys are the ids as strings), else LABEL_i as transformers names them. */
  public java.util.List<String> labelNames() {
    java.util.List<String> out = new java.util.ArrayList<>();
    for (int i = 0; i < numLabels(); i++) {
      out.add(raw.path("id2label").path(Integer.toString(i)).asText("LABEL_" + i));
    }
    return out;
  }

  /**
   * The most tokens a row may hold: max_position_embeddings, less RoBERTa's offset (its positions
   * start after pad_token_id, so roberta-base's 514 positions hold 512 tokens).
   */
  public int contextLength() {
    return arch == Architecture.ROBERTA ? maxPositions - raw.path("pad_token_id").asInt(1) - 1 : maxPositions;
  }

  /** DeBERTa's disentangled score terms besides content-to-content (c2p, p2c: 0 to 2), each a (B, nh, T, T) tensor per layer; 0 for the others. */
  public int disentangledTerms() {
    if (arch != Architecture.DEBERTA_V2) {
      return 0;
    }
    DebertaV2Encoder.Relative r = DebertaV2Encoder.Relative.of(this);
    return (r.c2p() ? 1 : 0) + (r.p2c() ? 1 : 0);
  }

  /** The std of transformers' normal init for weights the checkpoint lacks (a classification head). */
  public double initializerRange() {
    return raw.path("initializer_range").asDouble(0.02);
  }

  /**
   * A dropout rate of config.json ({@code field}), or {@code fallback} when it is absent or null, as
   * the architecture's transformers config class defaults it; refused outside [0, 1) by name.
   */
  public double dropout(String field, double fallback) {
    JsonNode n = raw.path(field);
    if (n.isMissingNode() || n.isNull()) {
      return fallback;
    }
    if (!n.isNumber() || n.asDouble() < 0 || n.asDouble() >= 1) {
      throw new IllegalArgumentException("config field " + field + " must be a dropout rate in [0, 1) but found " + n);
    }
    return n.asDouble();
  }

  private static void check(String field, int v) {
    if (v <= 0) {
      throw new IllegalArgumentException("config field " + field + " must be > 0 but found " + v);
    }
  }

  private static final ObjectMapper JSON = new ObjectMapper();

  public static ModelConfig read(Path configJson) {
    JsonNode root;
    try {
      root = JSON.readTree(Files.readString(configJson));
    } catch (IOException e) {
      throw new IllegalArgumentException(configJson + ": cannot read config: " + e.getMessage(), e);
    }
    if (root == null || !root.isObject()) {
      throw new IllegalArgumentException(configJson + ": must hold a JSON object");
    }
    try {
      return fromJson((ObjectNode) root, configJson.toString());
    } catch (IllegalArgumentException e) {
      throw e.getMessage().startsWith(configJson.toString()) ? e : new IllegalArgumentException(configJson + ": " + e.getMessage(), e);
    }
  }

  public static ModelConfig fromJson(ObjectNode c, String where) {
    String type = text(c, "model_type", where);
    Architecture arch = Architecture.forModelType(type, where);
    if (arch.encoder()) {
      return encoder(arch, type, c, where);
    }
    if (arch == Architecture.GPTJ) {
      int hidden = integer(c, "n_embd", where);
      int heads = integer(c, "n_head", where);
      String act = c.path("activation_function").asText("gelu_new");
      if (!act.equals("gelu_new")) {
        throw new IllegalArgumentException(where + ": activation_function '" + act + "' is not supported, expected gelu_new");
      }
      if (hidden % heads != 0) {
        throw new IllegalArgumentException(where + ": n_embd (" + hidden + ") must be a multiple of n_head (" + heads + ")");
      }
      if (c.path("tie_word_embeddings").asBoolean(false)) {
        throw new IllegalArgumentException(where + ": tie_word_embeddings true is not supported for gptj, expected false (GPT-J's lm_head is "
            + "its own, with a bias)");
      }
      int rd = c.hasNonNull("rotary_dim") ? c.get("rotary_dim").asInt() : hidden / heads;
      if (rd <= 0 || rd % 2 != 0 || rd > hidden / heads) {
        throw new IllegalArgumentException(where + ": rotary_dim must be even and in [2, " + hidden / heads + "] (the head size) but found " + rd);
      }
      return new ModelConfig(arch, type, integer(c, "vocab_size", where), hidden, integer(c, "n_layer", where), heads, heads, hidden / heads,
          c.hasNonNull("n_inner") ? c.get("n_inner").asInt() : 4 * hidden, c.path("layer_norm_epsilon").asDouble(1e-5), 10000.0, RopeScaling.NONE,
          integer(c, "n_positions", where), 0, false, false, true, c);
    }
    if (arch == Architecture.GPT2) {
      int hidden = integer(c, "n_embd", where);
      int heads = integer(c, "n_head", where);
      String act = c.path("activation_function").asText("gelu_new");
      if (!act.equals("gelu_new") && !act.equals("gelu_pytorch_tanh")) {
        throw new IllegalArgumentException(where + ": activation_function '" + act + "' is not supported, expected gelu_new");
      }
      return new ModelConfig(arch, type, integer(c, "vocab_size", where), hidden, integer(c, "n_layer", where), heads, heads,
          hidden / heads, c.hasNonNull("n_inner") ? c.get("n_inner").asInt() : 4 * hidden,
          c.path("layer_norm_epsilon").asDouble(1e-5), 0, RopeScaling.NONE, integer(c, "n_positions", where), 0,
          c.path("tie_word_embeddings").asBoolean(true), true, true, c);
    }
    int hidden = integer(c, "hidden_size", where);
    int heads = integer(c, "num_attention_heads", where);
    int kv = c.hasNonNull("num_key_value_heads") ? c.get("num_key_value_heads").asInt() : heads;
    int headDim = c.hasNonNull("head_dim") ? c.get("head_dim").asInt() : hidden / heads;
    String act = c.path("hidden_act").asText("silu");
    if (!act.equals("silu")) {
      throw new IllegalArgumentException(where + ": hidden_act '" + act + "' is not supported, expected silu");
    }
    boolean qwen = type.equals("qwen2");
    // transformers 5 moved rope_theta and rope_scaling into rope_parameters; older configs have them at the top.
    JsonNode ropeParams = c.path("rope_parameters");
    if (ropeParams.isObject() && !ropeParams.has("rope_type") && !ropeParams.has("rope_theta")) {
      throw new IllegalArgumentException(where + ": rope_parameters per layer type " + fieldNames(ropeParams)
          + " are not supported, expected one rope_parameters object for all layers");
    }
    double theta = c.hasNonNull("rope_theta") ? c.get("rope_theta").asDouble() : ropeParams.path("rope_theta").asDouble(10000.0);
    JsonNode scaling = c.hasNonNull("rope_scaling") ? c.get("rope_scaling") : ropeParams.isObject() ? ropeParams : null;
    int window = 0;
    if (type.equals("mistral") && c.hasNonNull("sliding_window")) {
      window = integer(c, "sliding_window", where);
    }
    if (c.path("use_sliding_window").asBoolean(false)) {
      throw new IllegalArgumentException(where + ": use_sliding_window is true; sliding-window attention is supported for mistral only, "
          + "expected use_sliding_window false for " + type);
    }
    return new ModelConfig(arch, type, integer(c, "vocab_size", where), hidden, integer(c, "num_hidden_layers", where), heads, kv,
        headDim, integer(c, "intermediate_size", where), c.path("rms_norm_eps").asDouble(1e-6),
        theta, ropeScaling(scaling, where),
        c.path("max_position_embeddings").asInt(2048), window, c.path("tie_word_embeddings").asBoolean(false),
        c.path("attention_bias").asBoolean(qwen), c.path("mlp_bias").asBoolean(false), c);
  }

  /**
   * RobertaConfig and DebertaV2Config (BertConfig's field names). What the encoders do not build is
   * refused by name: another activation, multi-label problems, an even DeBERTa convolution kernel, an
   * embedding size other than the hidden size, and a head size of its own.
   */
  private static ModelConfig encoder(Architecture arch, String type, ObjectNode c, String where) {
    boolean distil = arch == Architecture.DISTILBERT; // DistilBertConfig's own names: dim, n_heads, n_layers, hidden_dim, activation
    int hidden = integer(c, distil ? "dim" : "hidden_size", where);
    int heads = integer(c, distil ? "n_heads" : "num_attention_heads", where);
    int layers = integer(c, distil ? "n_layers" : "num_hidden_layers", where);
    int intermediate = integer(c, distil ? "hidden_dim" : "intermediate_size", where);
    String act = c.path(distil ? "activation" : "hidden_act").asText("gelu");
    if (!act.equals("gelu")) {
      throw new IllegalArgumentException(where + ": " + (distil ? "activation" : "hidden_act") + " '" + act + "' is not supported for " + type
          + ", expected gelu");
    }
    if (hidden % heads != 0) {
      throw new IllegalArgumentException(where + ": " + (distil ? "dim" : "hidden_size") + " (" + hidden + ") must be a multiple of "
          + (distil ? "n_heads" : "num_attention_heads") + " (" + heads + ")");
    }
    if (c.path("problem_type").asText("").equals("multi_label_classification")) {
      throw new IllegalArgumentException(where + ": problem_type multi_label_classification is not supported, expected single_label_classification "
          + "or regression");
    }
    if (arch == Architecture.DEBERTA_V2) {
      int kernel = c.path("conv_kernel_size").asInt(0);
      if (kernel > 0 && kernel % 2 == 0) {
        throw new IllegalArgumentException(where + ": conv_kernel_size " + kernel + " is not supported: DeBERTa-v2's convolution keeps the "
            + "length only for an odd kernel, expected 1, 3, 5, ...");
      }
      int groups = c.path("conv_groups").asInt(1);
      if (kernel > 0 && (groups < 1 || hidden % groups != 0)) {
        throw new IllegalArgumentException(where + ": conv_groups " + groups + " must divide hidden_size " + hidden);
      }
      String convAct = c.path("conv_act").asText("tanh");
      if (kernel > 0 && !convAct.equals("tanh") && !convAct.equals("gelu")) {
        throw new IllegalArgumentException(where + ": conv_act '" + convAct + "' is not supported, expected tanh or gelu");
      }
      if (c.path("embedding_size").asInt(hidden) != hidden) {
        throw new IllegalArgumentException(where + ": embedding_size " + c.get("embedding_size") + " is not supported, expected hidden_size " + hidden);
      }
      if (c.path("attention_head_size").asInt(hidden / heads) != hidden / heads) {
        throw new IllegalArgumentException(where + ": attention_head_size " + c.get("attention_head_size") + " is not supported, expected "
            + "hidden_size / num_attention_heads = " + hidden / heads);
      }
    }
    double eps = distil ? 1e-12 : c.path("layer_norm_eps").asDouble(arch == Architecture.DEBERTA_V2 ? 1e-7 : 1e-12); // modeling_distilbert fixes 1e-12
    ModelConfig config = new ModelConfig(arch, type, integer(c, "vocab_size", where), hidden, layers, heads, heads,
        hidden / heads, intermediate, eps, 0, RopeScaling.NONE, c.path("max_position_embeddings").asInt(512), 0, false, true,
        true, c);
    if (config.numLabels() < 1) {
      throw new IllegalArgumentException(where + ": num_labels must be >= 1 but found " + config.numLabels());
    }
    return config;
  }

  private static RopeScaling ropeScaling(JsonNode n, String where) {
    if (n == null || n.isNull()) {
      return RopeScaling.NONE;
    }
    String type = n.hasNonNull("rope_type") ? n.get("rope_type").asText() : n.path("type").asText("default");
    try {
      return new RopeScaling(type, n.path("factor").asDouble(1.0), n.path("low_freq_factor").asDouble(1.0),
          n.path("high_freq_factor").asDouble(4.0), n.path("original_max_position_embeddings").asInt(8192));
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException(where + ": " + e.getMessage(), e);
    }
  }

  private static String fieldNames(JsonNode n) {
    java.util.List<String> names = new java.util.ArrayList<>();
    n.fieldNames().forEachRemaining(names::add);
    return names.toString();
  }

  private static String text(JsonNode c, String f, String where) {
    if (!c.path(f).isTextual()) {
      throw new IllegalArgumentException(where + ": missing string field '" + f + "'");
    }
    return c.get(f).asText();
  }

  private static int integer(JsonNode c, String f, String where) {
    if (!c.path(f).canConvertToInt()) {
      throw new IllegalArgumentException(where + ": missing integer field '" + f + "' (found " + c.get(f) + ")");
    }
    return c.get(f).asInt();
  }
}
