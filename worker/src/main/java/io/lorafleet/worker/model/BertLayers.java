package io.lorafleet.worker.model;

import ai.djl.ndarray.NDArray;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * BERT's layer stack, which RoBERTa copies (modeling_roberta.py's "Copied from
 * transformers.models.bert"): under {@code prefix()} ("bert.", "roberta."), each layer's
 * attention.self.query/key/value under bidirectional attention, then {@link EncoderBlocks#rest}.
 * The embeddings and the head are each model's own.
 */
abstract class BertLayers extends EncoderBackbone {
  /** The model's key prefix, as its ForSequenceClassification class saves it. */
  abstract String prefix();

  String layer(int i) {
    return prefix() + "encoder.layer." + i + ".";
  }

  @Override
  public List<LinearSpec> linears(ModelConfig c) {
    List<LinearSpec> out = new ArrayList<>();
    int h = c.hidden();
    for (int i = 0; i < c.layers(); i++) {
      String p = layer(i);
      String x = p + "attention.self"; // q, k and v read the layer input
      out.add(new LinearSpec(p + "attention.self.query", i, h, h, true, x));
      out.add(new LinearSpec(p + "attention.self.key", i, h, h, true, x));
      out.add(new LinearSpec(p + "attention.self.value", i, h, h, true, x));
      out.addAll(EncoderBlocks.blockLinears(c, p, i));
    }
    return out;
  }

  /** The embeddings' tensors (word, position, token type when {@code typeVocab} > 0, LayerNorm) and every layer's. */
  List<ParamSpec> stackParams(ModelConfig c, int typeVocab) {
    List<ParamSpec> out = new ArrayList<>();
    int h = c.hidden();
    out.add(new ParamSpec(prefix() + "embeddings.word_embeddings.weight", new long[] {c.vocabSize(), h}, false));
    out.add(new ParamSpec(prefix() + "embeddings.position_embeddings.weight", new long[] {c.maxPositions(), h}, false));
    if (typeVocab > 0) {
      out.add(new ParamSpec(prefix() + "embeddings.token_type_embeddings.weight", new long[] {typeVocab, h}, false));
    }
    out.addAll(EncoderBlocks.layerNorm(prefix() + "embeddings.LayerNorm", h));
    out.addAll(EncoderBlocks.linearParams(c, linears(c)));
    return out;
  }

  @Override
  public NDArray[] qkv(LanguageModel m, ForwardContext ctx, int i, NDArray h, NDArray[] tables) {
    String p = layer(i) + "attention.self.";
    return EncoderBlocks.qkv(m, ctx, h, p + "query", p + "key", p + "value");
  }

  /** BertSelfAttention's dropout on the probabilities: attention_probs_dropout_prob. */
  @Override
  public Dropout.Site attentionDropout(ModelConfig c, int i) {
    return new Dropout.Site(layer(i) + "attention.self.dropout", EncoderBlocks.attentionProbsDropout(c));
  }

  @Override
  public NDArray rest(LanguageModel m, ForwardContext ctx, int i, NDArray h, NDArray a) {
    return EncoderBlocks.rest(m, ctx, layer(i), h, a);
  }

  @Override
  NDArray encode(LanguageModel m, ForwardContext ctx, NDArray ids, int[][] positions, Optional<int[][]> segments, Optional<int[][]> tokenTypes) {
    return EncoderBlocks.encode(this, m, ctx, ids, positions, segments, tokenTypes);
  }
}
