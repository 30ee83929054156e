package io.lorafleet.worker;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.ModelConfig;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.TinyModelSpec;
import io.lorafleet.worker.safetensors.Tensor;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;

/** Tiny models for tests, with weights large enough that gradients are far from zero. */
public final class TinyModels {
  private TinyModels() {}

  /** Llama with GQA (4 heads, 2 kv heads), untied head. */
  public static final TinyModelSpec LLAMA = new TinyModelSpec("llama", 2, 16, 4, 2, 24, 37, 64, false);
  /** Qwen2: q/k/v biases, tied embeddings. */
  public static final TinyModelSpec QWEN2 = new TinyModelSpec("qwen2", 2, 16, 4, 2, 24, 37, 64, true);
  public static final TinyModelSpec GPT2 = new TinyModelSpec("gpt2", 2, 16, 4, 4, 32, 37, 32, true);
  /** GPT-J: 2 heads of 8 channels, rotary on the first 4 of each (rotary_dim 4), lm_head with a bias. */
  public static final TinyModelSpec GPTJ = new TinyModelSpec("gptj", 2, 16, 2, 2, 32, 37, 64, false);

  /** RoBERTa sequence classifier: 4 heads of 4 channels, two labels. */
  public static final TinyModelSpec ROBERTA = new TinyModelSpec("roberta", 2, 16, 4, 4, 32, 37, 32, false);
  /** BERT sequence classifier: positions from 0, two token types, pooler and classifier. */
  public static final TinyModelSpec BERT = new TinyModelSpec("bert", 2, 16, 4, 4, 32, 37, 32, false);
  /** DistilBERT sequence classifier: BERT's blocks under DistilBERT's names, no token types, ReLU pre_classifier and classifier. */
  public static final TinyModelSpec DISTILBERT = new TinyModelSpec("distilbert", 2, 16, 4, 4, 32, 37, 32, false);
  /** DeBERTa-v3-shaped classifier: relative attention only, shared keys, log buckets beyond ±4. */
  public static final TinyModelSpec DEBERTA = new TinyModelSpec("deberta-v2", 2, 16, 4, 4, 32, 37, 64, false);

  public static ModelConfig config(TinyModelSpec spec) {
    return ModelConfig.fromJson(spec.configJson(1, 2), spec.modelType());
  }

  /** Random weights (std 0.3, biases and norms perturbed too, so every term matters). */
  public static Map<String, Tensor> tensors(TinyModelSpec spec, long seed) {
    return tensors(config(spec), seed);
  }

  /** As {@link #tensors(TinyModelSpec, long)}, for a config a test has changed (labels, options). */
  public static Map<String, Tensor> tensors(ModelConfig config, long seed) {
    Map<String, Tensor> base = ModelDirectory.randomTensors(config, seed);
    Random rng = new Random(seed + 1);
    Map<String, Tensor> out = new LinkedHashMap<>();
    base.forEach((k, t) -> {
      float[] v = t.toFloatArray();
      boolean scaleLike = k.toLowerCase(java.util.Locale.ROOT).contains("norm") || k.contains("ln_");
      for (int i = 0; i < v.length; i++) {
        v[i] = scaleLike && !k.endsWith(".bias") ? 1f + (float) (rng.nextGaussian() * 0.1) : (float) (rng.nextGaussian() * 0.3);
      }
      out.put(k, Tensor.ofFloats(v, t.shape()));
    });
    return out;
  }

  /** An adapter's initial values plus N(0, 0.1) noise, so that B ≠ 0 and every factor matters. */
  public static float[] trained(io.lorafleet.worker.lora.LoraModel lora, long seed) {
    float[] p = lora.initialParams(seed);
    Random r = new Random(seed);
    for (int i = 0; i < p.length; i++) {
      p[i] += (float) (r.nextGaussian() * 0.1);
    }
    return p;
  }

  public static LanguageModel model(TinyModelSpec spec, long seed, DataType dtype) {
    return LanguageModel.fromTensors(config(spec), tensors(spec, seed), Device.cpu(), dtype);
  }
}
