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
final class RobertaEncoder implements Backbone {
  static final String PREFIX = "roberta.";

  private static String layer(int i) {
    return PREFIX + "encoder.layer." + i + ".";
  }

  static int typeVocab(ModelConfig c) {
    return c.raw().path("type_vocab_size").asInt(1);
  }

  static int padId(ModelConfig c) {
    return c.raw().path("pad_token_id").asInt(1);
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

  @Override
  public List<ParamSpec> params(ModelConfig c) {
    List<ParamSpec> out = new ArrayList<>();
    int h = c.hidden();
    out.add(new ParamSpec(PREFIX + "embeddings.word_embeddings.weight", new long[] {c.vocabSize(), h}, false));
    out.add(new ParamSpec(PREFIX + "embeddings.position_embeddings.weight", new long[] {c.maxPositions(), h}, false));
    if (typeVocab(c) > 0) {
      out.add(new ParamSpec(PREFIX + "embeddings.token_type_embeddings.weight", new long[] {typeVocab(c), h}, false));
    }
    out.addAll(EncoderBlocks.layerNorm(PREFIX + "embeddings.LayerNorm", h));
    out.addAll(EncoderBlocks.linearParams(c, linears(c)));
    out.addAll(headParams(c));
    return out;
  }

  @Override
  public List<ParamSpec> headParams(ModelConfig c) {
    List<ParamSpec> out = new ArrayList<>(EncoderBlocks.headLinearParams("classifier.dense", c.hidden(), c.hidden()));
    out.addAll(EncoderBlocks.headLinearParams("classifier.out_proj", c.hidden(), c.numLabels()));
    return out;
  }

  /** LayerNorm(word + position + token type 0), positions offset past the pad id as RoBERTa numbers them. */
  @Override
  public NDArray embed(LanguageModel m, ForwardContext ctx, NDArray ids, int[][] positions) {
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
    return EncoderBlocks.finishEmbeddings(m, ctx, PREFIX + "embeddings.", e, typeVocab(c));
  }

  @Override
  public NDArray[] qkv(LanguageModel m, ForwardContext ctx, int i, NDArray h, NDArray[] tables) {
    ModelConfig c = m.config();
    String p = layer(i) + "attention.self.";
    return new NDArray[] {Ops.heads(m.linear(ctx, h, p + "query"), c.heads(), c.headDim()), Ops.heads(m.linear(ctx, h, p + "key"), c.heads(), c.headDim()),
        Ops.heads(m.linear(ctx, h, p + "value"), c.heads(), c.headDim())};
  }

  @Override
  public NDArray rest(LanguageModel m, ForwardContext ctx, int i, NDArray h, NDArray a) {
    return EncoderBlocks.rest(m, ctx, layer(i), h, a);
  }

  /** RobertaClassificationHead on the first token: (B, T', H) → (B, num_labels). */
  @Override
  public NDArray head(LanguageModel m, ForwardContext ctx, NDArray h) {
    NDArray x = EncoderBlocks.headLinear(m, ctx, EncoderBlocks.first(h), "classifier.dense").tanh();
    return EncoderBlocks.headLinear(m, ctx, x, "classifier.out_proj");
  }

  /** Class logits (B, num_labels) under bidirectional attention; padding lies in a segment of its own. */
  @Override
  public NDArray forward(LanguageModel m, ForwardContext ctx, NDArray ids, int[][] positions, Optional<int[][]> segments, Optional<KvCache> cache) {
    ModelConfig c = m.config();
    EncoderBlocks.refuseCache(c, cache);
    NDArray mask = EncoderBlocks.mask(ctx.manager(), positions.length, positions[0].length, segments, m.dtype());
    NDArray h = embed(m, ctx, ids, positions);
    for (int i = 0; i < c.layers(); i++) {
      NDArray[] qkv = qkv(m, ctx, i, h, new NDArray[0]);
      h = rest(m, ctx, i, h, Ops.attention(qkv[0], qkv[1], qkv[2], mask));
    }
    return head(m, ctx, h);
  }
}
