package io.lorafleet.worker.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * RobertaForSequenceClassification, following transformers' modeling_roberta.py: embeddings are
 * word + learned position + token type, then LayerNorm, where positions start after the pad id
 * (create_position_ids_from_input_ids: padding_idx + 1 + i for the i-th real token); post-LayerNorm
 * blocks with q/k/v/dense under bidirectional attention and GELU; and RobertaClassificationHead on
 * the first token, out_proj(tanh(dense(h[:, 0]))). Dropout is off, as in eval mode. Keys carry
 * transformers' "roberta." prefix; a checkpoint written by RobertaModel (no prefix) loads too.
 */
final class RobertaEncoder extends BertLayers {
  static final String PREFIX = "roberta.";

  @Override
  String prefix() {
    return PREFIX;
  }

  static int typeVocab(ModelConfig c) {
    return c.raw().path("type_vocab_size").asInt(1);
  }

  static int padId(ModelConfig c) {
    return c.raw().path("pad_token_id").asInt(1);
  }

  @Override
  public List<ParamSpec> params(ModelConfig c) {
    List<ParamSpec> out = new ArrayList<>();
    int h = c.hidden();
    out.addAll(stackParams(c, typeVocab(c)));
    out.addAll(headParams(c));
    return out;
  }

  @Override
  public List<ParamSpec> headParams(ModelConfig c) {
    List<ParamSpec> out = new ArrayList<>(EncoderBlocks.headLinearParams("classifier.dense", c.hidden(), c.hidden()));
    out.addAll(EncoderBlocks.headLinearParams("classifier.out_proj", c.hidden(), c.numLabels()));
    return out;
  }

  /** LayerNorm(word + position + token type), positions offset past the pad id as RoBERTa numbers them. */
  @Override
  public NDArray embed(LanguageModel m, ForwardContext ctx, NDArray ids, int[][] positions, Optional<int[][]> tokenTypes) {
    ModelConfig c = m.config();
    int offset = padId(c) + 1;
    int[][] pos = new int[positions.length][];
    for (int b = 0; b < positions.length; b++) {
      pos[b] = new int[positions[b].length];
      for (int i = 0; i < pos[b].length; i++) {
        pos[b][i] = positions[b][i] + offset;
        if (pos[b][i] >= c.maxPositions()) {
          throw new IllegalArgumentException("row " + b + " has " + (positions[b][i] + 1) + " tokens but RoBERTa's max_position_embeddings "
              + c.maxPositions() + " with pad_token_id " + padId(c) + " allows " + (c.maxPositions() - offset));
        }
      }
    }
    NDArray posIds = ctx.manager().create(pos).toType(DataType.INT64, false);
    NDArray e = m.embed(ctx, PREFIX + "embeddings.word_embeddings.weight", ids).add(m.embed(ctx, PREFIX + "embeddings.position_embeddings.weight", posIds));
    return EncoderBlocks.finishEmbeddings(m, ctx, PREFIX + "embeddings.", e, typeVocab(c), tokenTypes);
  }

  /**
   * RobertaClassificationHead on the first token, out_proj(dropout(tanh(dense(dropout(h[:, 0]))))):
   * (B, T', H) → (B, num_labels). Its one dropout module runs twice, so the second call's site is
   * named apart ("classifier.dropout.1") to draw a mask of its own, as a second call does in torch.
   */
  @Override
  public NDArray head(LanguageModel m, ForwardContext ctx, NDArray h) {
    double p = EncoderBlocks.classifierDropout(m.config());
    NDArray x = ctx.drop(EncoderBlocks.first(h), new Dropout.Site("classifier.dropout", p));
    x = ctx.drop(EncoderBlocks.headLinear(m, ctx, x, "classifier.dense").tanh(), new Dropout.Site("classifier.dropout.1", p));
    return EncoderBlocks.headLinear(m, ctx, x, "classifier.out_proj");
  }

  @Override
  public String sequenceClassifierClass(ModelConfig c) {
    return c.modelType().equals("xlm-roberta") ? "XLMRobertaForSequenceClassification" : "RobertaForSequenceClassification";
  }
}
