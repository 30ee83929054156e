package io.lorafleet.worker.model;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * The shape of a small randomly initialised model, written in exactly the HF layout by
 * {@link ModelDirectory}. {@code modelType} is llama, mistral, qwen2, gpt2, gptj, or one of the
 * sequence classifiers (two labels) roberta, xlm-roberta, bert and deberta-v2.
 */
public record TinyModelSpec(String modelType, int layers, int hidden, int heads, int kvHeads, int intermediate, int vocab, int maxPositions, boolean tieEmbeddings) {
  public TinyModelSpec {
    Architecture.forModelType(modelType, "init-model --arch");
    for (var f : new Object[][] {{"layers", layers}, {"hidden", hidden}, {"heads", heads}, {"kv-heads", kvHeads}, {"intermediate", intermediate}, {"vocab", vocab}, {"max-positions", maxPositions}}) {
      if ((int) f[1] <= 0) {
        throw new IllegalArgumentException("--" + f[0] + " must be > 0 but found " + f[1]);
      }
    }
    if (hidden % heads != 0) {
      throw new IllegalArgumentException("--hidden (" + hidden + ") must be a multiple of --heads (" + heads + ")");
    }
    if (heads % kvHeads != 0) {
      throw new IllegalArgumentException("--heads (" + heads + ") must be a multiple of --kv-heads (" + kvHeads + ")");
    }
  }

  public TinyModelSpec withVocab(int v) {
    return new TinyModelSpec(modelType, layers, hidden, heads, kvHeads, intermediate, v, maxPositions, tieEmbeddings);
  }

  /** config.json as transformers writes it for this architecture. */
  public ObjectNode configJson(int bosId, int eosId) {
    ObjectNode c = new ObjectMapper().createObjectNode();
    c.put("model_type", modelType);
    if (modelType.equals("gpt2")) {
      c.putArray("architectures").add("GPT2LMHeadModel");
      c.put("n_embd", hidden);
      c.put("n_layer", layers);
      c.put("n_head", heads);
      c.put("n_inner", intermediate);
      c.put("n_positions", maxPositions);
      c.put("n_ctx", maxPositions);
      c.put("vocab_size", vocab);
      c.put("activation_function", "gelu_new");
      c.put("layer_norm_epsilon", 1e-5);
      c.put("tie_word_embeddings", true);
    } else if (modelType.equals("gptj")) {
      c.putArray("architectures").add("GPTJForCausalLM");
      c.put("n_embd", hidden);
      c.put("n_layer", layers);
      c.put("n_head", heads);
      c.put("n_inner", intermediate);
      c.put("n_positions", maxPositions);
      c.put("rotary_dim", Math.max(2, hidden / heads / 2 / 2 * 2)); // part of each head, as GPT-J-6B's 64 of 256
      c.put("vocab_size", vocab);
      c.put("activation_function", "gelu_new");
      c.put("layer_norm_epsilon", 1e-5);
      c.put("tie_word_embeddings", false);
    } else if (Architecture.forModelType(modelType, "init-model --arch").encoder()) {
      encoderConfig(c);
    } else {
      String arch = switch (modelType) {
        case "mistral" -> "MistralForCausalLM";
        case "qwen2" -> "Qwen2ForCausalLM";
        default -> "LlamaForCausalLM";
      };
      c.putArray("architectures").add(arch);
      c.put("hidden_size", hidden);
      c.put("num_hidden_layers", layers);
      c.put("num_attention_heads", heads);
      c.put("num_key_value_heads", kvHeads);
      c.put("intermediate_size", intermediate);
      c.put("vocab_size", vocab);
      c.put("max_position_embeddings", maxPositions);
      c.put("rms_norm_eps", 1e-6);
      c.put("rope_theta", 10000.0);
      c.put("hidden_act", "silu");
      c.put("tie_word_embeddings", tieEmbeddings);
      c.put("attention_bias", modelType.equals("qwen2"));
    }
    c.put("bos_token_id", bosId);
    c.put("eos_token_id", eosId);
    c.put("torch_dtype", "float32");
    return c;
  }

  /** config.json of a RoBERTa, BERT or DeBERTa-v2 sequence classifier with two labels. */
  private void encoderConfig(ObjectNode c) {
    if (modelType.equals("distilbert")) { // DistilBertConfig's names; distilbert-base's shape otherwise
      c.putArray("architectures").add("DistilBertForSequenceClassification");
      c.put("dim", hidden);
      c.put("n_layers", layers);
      c.put("n_heads", heads);
      c.put("hidden_dim", intermediate);
      c.put("vocab_size", vocab);
      c.put("max_position_embeddings", maxPositions);
      c.put("sinusoidal_pos_embds", false);
      c.put("activation", "gelu");
      c.put("initializer_range", 0.02);
      c.put("dropout", 0.1);
      c.put("attention_dropout", 0.1);
      c.put("seq_classif_dropout", 0.2);
      c.put("pad_token_id", io.lorafleet.worker.tokenizer.TokenizerFiles.PAD);
      c.putObject("id2label").put("0", "LABEL_0").put("1", "LABEL_1");
      c.putObject("label2id").put("LABEL_0", 0).put("LABEL_1", 1);
      c.put("problem_type", "single_label_classification");
      return;
    }
    ModelConfig shape = ModelConfig.fromJson(new ObjectMapper().createObjectNode().put("model_type", modelType).put("hidden_size", hidden)
        .put("num_attention_heads", heads).put("num_hidden_layers", layers).put("intermediate_size", intermediate).put("vocab_size", vocab), modelType);
    boolean roberta = shape.arch() == Architecture.ROBERTA;
    c.putArray("architectures").add(Backbone.of(shape).sequenceClassifierClass(shape));
    c.put("hidden_size", hidden);
    c.put("num_hidden_layers", layers);
    c.put("num_attention_heads", heads);
    c.put("intermediate_size", intermediate);
    c.put("vocab_size", vocab);
    c.put("hidden_act", "gelu");
    c.put("initializer_range", 0.02);
    c.put("pad_token_id", io.lorafleet.worker.tokenizer.TokenizerFiles.PAD);
    c.putObject("id2label").put("0", "LABEL_0").put("1", "LABEL_1");
    c.putObject("label2id").put("LABEL_0", 0).put("LABEL_1", 1);
    if (roberta) { // positions start after the pad id, as roberta-base's 514 for 512 tokens
      c.put("max_position_embeddings", maxPositions + io.lorafleet.worker.tokenizer.TokenizerFiles.PAD + 1);
      c.put("type_vocab_size", 1);
      c.put("layer_norm_eps", 1e-5);
    } else if (shape.arch() == Architecture.BERT) { // bert-base's: positions from 0, two token types
      c.put("max_position_embeddings", maxPositions);
      c.put("type_vocab_size", 2);
      c.put("layer_norm_eps", 1e-12);
    } else { // DeBERTa-v3's shape: relative attention only, shared keys, log buckets beyond ±4
      c.put("max_position_embeddings", maxPositions);
      c.put("type_vocab_size", 0);
      c.put("layer_norm_eps", 1e-7);
      c.put("relative_attention", true);
      c.put("position_biased_input", false);
      c.putArray("pos_att_type").add("p2c").add("c2p");
      c.put("share_att_key", true);
      c.put("norm_rel_ebd", "layer_norm");
      c.put("max_relative_positions", -1);
      c.put("position_buckets", 8);
      c.put("pooler_hidden_size", hidden);
      c.put("pooler_hidden_act", "gelu");
    }
    c.put("problem_type", "single_label_classification");
  }
}
