package io.lorafleet.worker.quant;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.List;
import java.util.Set;

/**
 * What a checkpoint's {@code quantization_config} (config.json) says about how its projections are
 * stored: not at all, bitsandbytes 4-bit NF4, or GPTQ INT4. Other methods and settings are refused
 * by name. Which projections are quantized is read from the tensors themselves (bitsandbytes and
 * transformers skip {@code lm_head} and whatever {@code llm_int8_skip_modules} names).
 */
public sealed interface QuantizedCheckpoint {
  /** A full-precision checkpoint. */
  record None() implements QuantizedCheckpoint {}

  /** bitsandbytes' Linear4bit NF4 weights. */
  record Bnb4(boolean doubleQuant, String computeDtype) implements QuantizedCheckpoint {}

  /** AutoGPTQ's QuantLinear INT4 weights. */
  record Gptq(GptqTensor.Config config) implements QuantizedCheckpoint {}

  Set<String> GPTQ_FORMATS = Set.of("gptq", "gptq_v2");

  /** How the projections are held: none, nf4, nf4-dq or gptq-int4. */
  default String tag() {
    if (this instanceof Bnb4 b) {
      return b.doubleQuant() ? "nf4-dq" : "nf4";
    }
    return this instanceof Gptq ? "gptq-int4" : "none";
  }

  /** Reads config.json's quantization_config; {@code where} names the file in errors. */
  static QuantizedCheckpoint of(ObjectNode config, String where) {
    JsonNode q = config.get("quantization_config");
    if (q == null || q.isNull()) {
      return new None();
    }
    String method = q.path("quant_method").asText("");
    switch (method) {
      case "bitsandbytes" -> {
        if (q.path("load_in_8bit").asBoolean(false) || !q.path("load_in_4bit").asBoolean(false)) {
          throw new IllegalArgumentException(where + ": quantization_config has load_in_4bit " + q.get("load_in_4bit") + " and load_in_8bit "
              + q.get("load_in_8bit") + "; only 4-bit bitsandbytes bases (load_in_4bit: true) are supported, not LLM.int8()");
        }
        String type = q.path("bnb_4bit_quant_type").asText("fp4");
        if (!type.equals("nf4")) {
          throw new IllegalArgumentException(where + ": quantization_config.bnb_4bit_quant_type is '" + type + "', expected nf4 (fp4 is not supported)");
        }
        String storage = q.path("bnb_4bit_quant_storage").asText("uint8");
        if (!storage.equals("uint8")) {
          throw new IllegalArgumentException(where + ": quantization_config.bnb_4bit_quant_storage is '" + storage + "', expected uint8");
        }
        return new Bnb4(q.path("bnb_4bit_use_double_quant").asBoolean(false), q.path("bnb_4bit_compute_dtype").asText("float32"));
      }
      case "gptq" -> {
        String format = q.path("checkpoint_format").asText("gptq");
        if (!GPTQ_FORMATS.contains(format)) {
          throw new IllegalArgumentException(where + ": quantization_config.checkpoint_format is '" + format + "', expected one of "
              + List.copyOf(new java.util.TreeSet<>(GPTQ_FORMATS)));
        }
        try {
          return new Gptq(new GptqTensor.Config(q.path("bits").asInt(0), q.path("group_size").asInt(128), q.path("desc_act").asBoolean(false),
              q.path("sym").asBoolean(true), format.equals("gptq_v2")));
        } catch (IllegalArgumentException e) {
          throw new IllegalArgumentException(where + ": " + e.getMessage(), e);
        }
      }
      default -> throw new IllegalArgumentException(where + ": quantization_config.quant_method is '" + method
          + "', expected bitsandbytes (4-bit NF4) or gptq (INT4)");
    }
  }

  /** The quantization_config that {@code lorafleet quantize} writes, as transformers' BitsAndBytesConfig.to_dict() names it. */
  static ObjectNode bnb4Config(boolean doubleQuant, String computeDtype) {
    ObjectNode q = new com.fasterxml.jackson.databind.ObjectMapper().createObjectNode();
    q.put("quant_method", "bitsandbytes");
    q.put("load_in_4bit", true);
    q.put("load_in_8bit", false);
    q.put("bnb_4bit_quant_type", "nf4");
    q.put("bnb_4bit_use_double_quant", doubleQuant);
    q.put("bnb_4bit_compute_dtype", computeDtype);
    q.put("bnb_4bit_quant_storage", "uint8");
    q.putArray("llm_int8_skip_modules").add("lm_head");
    return q;
  }
}
