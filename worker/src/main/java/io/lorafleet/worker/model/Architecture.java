package io.lorafleet.worker.model;

import java.util.Arrays;
import java.util.List;
import java.util.stream.Collectors;

/** The architecture families lorafleet runs, keyed by Hugging Face's {@code model_type}. */
public enum Architecture {
  /** Llama, Mistral and Qwen2: RMSNorm, SwiGLU, RoPE, grouped-query attention. */
  LLAMA(List.of("llama", "mistral", "qwen2")),
  /** GPT-2: learned positions, LayerNorm, tanh-GELU, fused Conv1D c_attn. */
  GPT2(List.of("gpt2")),
  /** GPT-J: parallel attention and MLP on one LayerNorm, partial rotary rotating every two channels, gelu_new. */
  GPTJ(List.of("gptj")),
  /** RoBERTa encoder with a sequence-classification head: post-LayerNorm blocks, GELU, learned positions offset past the pad id. */
  ROBERTA(List.of("roberta", "xlm-roberta")),
  /**
   * BERT and its descendants (MiniLM, e5, bge, gte, BioBERT, multilingual BERT) with a
   * sequence-classification head: post-LayerNorm blocks, GELU, learned positions from 0, token
   * types, the pooler (dense + tanh on [CLS]) and a linear classifier.
   */
  BERT(List.of("bert")),
  /** DeBERTa v2 and v3 encoder with pooler and classifier: disentangled attention over log-bucketed relative positions. */
  DEBERTA_V2(List.of("deberta-v2")),
  /** DistilBERT: BERT's blocks under its own names (q_lin, …, ffn.lin1), no token types, and a ReLU pre_classifier before the classifier. */
  DISTILBERT(List.of("distilbert"));

  private final List<String> modelTypes;

  Architecture(List<String> modelTypes) {
    this.modelTypes = modelTypes;
  }

  /** Whether this is a bidirectional encoder with a sequence-classification head (no generation). */
  public boolean encoder() {
    return this == ROBERTA || this == BERT || this == DEBERTA_V2 || this == DISTILBERT;
  }

  public List<String> modelTypes() {
    return modelTypes;
  }

  /** The sequence classifiers' model types, for messages: "roberta, xlm-roberta, bert, deberta-v2". */
  public static String encoderModelTypes() {
    return Arrays.stream(values()).filter(Architecture::encoder).flatMap(a -> a.modelTypes.stream()).collect(Collectors.joining(", "));
  }

  public static Architecture forModelType(String modelType, String where) {
    for (Architecture a : values()) {
      if (a.modelTypes.contains(modelType)) {
        return a;
      }
    }
    throw new IllegalArgumentException(
        where + ": unsupported model_type '" + modelType + "', supported: "
            + Arrays.stream(values()).flatMap(a -> a.modelTypes.stream()).collect(Collectors.joining(", ")));
  }
}
