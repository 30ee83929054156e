package io.lorafleet.worker.model;

import ai.djl.ndarray.NDArray;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * BertForSequenceClassification, following transformers' modeling_bert.py: BertEmbeddings (word +
 * learned position, numbered from 0, + token type, then LayerNorm); post-LayerNorm blocks with
 * q/k/v/dense under bidirectional attention and GELU; BertPooler (dense + tanh on the [CLS] token)
 * and a linear classifier on the pooled state. Keys carry the "bert." prefix of
 * BertForSequenceClassification, BertForMaskedLM and BertForPreTraining (whose own heads, cls.*,
 * are not read); a BertModel or sentence-transformers checkpoint without it loads too.
 *
 * <p>As PEFT does for SEQ_CLS, only {@code classifier} is trained whole; the pooler is a frozen base
 * tensor. A base saved without pooler weights (sentence embedding models such as all-MiniLM-L6-v2)
 * gets one initialized as transformers' _init_weights does it, which {@link #initializedWhenMissing} says.
 */
final class BertEncoder extends BertLayers {
  static final String PREFIX = "bert.";

  @Override
  String prefix() {
    return PREFIX;
  }
  static final String POOLER = PREFIX + "pooler.dense";

  static int typeVocab(ModelConfig c) {
    return c.raw().path("type_vocab_size").asInt(2);
  }

  @Override
  public List<ParamSpec> params(ModelConfig c) {
    List<ParamSpec> out = new ArrayList<>();
    int h = c.hidden();
    out.addAll(stackParams(c, typeVocab(c)));
    out.addAll(EncoderBlocks.headLinearParams(POOLER, h, h));
    out.addAll(headParams(c));
    return out;
  }

  @Override
  public List<ParamSpec> headParams(ModelConfig c) {
    return EncoderBlocks.headLinearParams("classifier", c.hidden(), c.numLabels());
  }

  @Override
  public List<String> initializedWhenMissing(ModelConfig c) {
    List<String> out = new ArrayList<>(List.of(POOLER + ".weight", POOLER + ".bias"));
    headParams(c).forEach(p -> out.add(p.name()));
    return out;
  }

  @Override
  public String sequenceClassifierClass(ModelConfig c) {
    return "BertForSequenceClassification";
  }

  /** LayerNorm(word + position + token type), positions from 0. */
  @Override
  public NDArray embed(LanguageModel m, ForwardContext ctx, NDArray ids, int[][] positions, Optional<int[][]> tokenTypes) {
    NDArray e = EncoderBlocks.wordAndPosition(m, ctx, PREFIX + "embeddings.", ids, positions);
    return EncoderBlocks.finishEmbeddings(m, ctx, PREFIX + "embeddings.", e, typeVocab(m.config()), tokenTypes);
  }

  /** BertPooler then the classifier: classifier(dropout(tanh(pooler.dense(h[:, 0])))), (B, T', H) → (B, num_labels). */
  @Override
  public NDArray head(LanguageModel m, ForwardContext ctx, NDArray h) {
    NDArray pooled = EncoderBlocks.headLinear(m, ctx, EncoderBlocks.first(h), POOLER).tanh();
    pooled = ctx.drop(pooled, new Dropout.Site("dropout", EncoderBlocks.classifierDropout(m.config())));
    return EncoderBlocks.headLinear(m, ctx, pooled, "classifier");
  }
}
