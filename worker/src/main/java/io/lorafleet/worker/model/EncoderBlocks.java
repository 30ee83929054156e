package io.lorafleet.worker.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.Activation;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * What RoBERTa and DeBERTa-v2 share, from BERT (transformers' modeling_bert.py, whose BertSelfOutput,
 * BertIntermediate and BertOutput both copy): the post-LayerNorm block after attention, its
 * tensors, the bidirectional padding mask and the first-token read-out. Every Linear is nn.Linear,
 * stored (out, in).
 */
final class EncoderBlocks {
  private EncoderBlocks() {}

  /**
   * The projections after attention in layer i under prefix p ("roberta.encoder.layer.0."):
   * attention.output.dense, intermediate.dense and output.dense.
   */
  static List<LinearSpec> blockLinears(ModelConfig c, String p, int i) {
    int h = c.hidden();
    return List.of(new LinearSpec(p + "attention.output.dense", i, h, h, true), new LinearSpec(p + "intermediate.dense", i, h, c.intermediate(), true),
        new LinearSpec(p + "output.dense", i, c.intermediate(), h, true));
  }

  /** The tensors of every projection, with each block's two LayerNorms after the dense that feeds them. */
  static List<ParamSpec> linearParams(ModelConfig c, List<LinearSpec> linears) {
    List<ParamSpec> out = new ArrayList<>();
    for (LinearSpec l : linears) {
      out.add(new ParamSpec(l.weightKey(), new long[] {l.out(), l.in()}, true));
      l.biasKey().ifPresent(b -> out.add(new ParamSpec(b, new long[] {l.out()}, false)));
      if (l.name().endsWith(".output.dense")) { // attention.output.dense and output.dense each feed a LayerNorm beside them
        String ln = l.name().substring(0, l.name().length() - "dense".length()) + "LayerNorm";
        out.addAll(layerNorm(ln, c.hidden()));
      }
    }
    return out;
  }

  /**
   * word + position embeddings under {@code prefix} (B, T, H), positions from 0 (BERT, DistilBERT);
   * a row longer than max_position_embeddings is refused by row.
   */
  static NDArray wordAndPosition(LanguageModel m, ForwardContext ctx, String prefix, NDArray ids, int[][] positions) {
    ModelConfig c = m.config();
    for (int b = 0; b < positions.length; b++) {
      int last = positions[b][positions[b].length - 1];
      if (last >= c.maxPositions()) {
        throw new IllegalArgumentException("row " + b + " has " + (last + 1) + " tokens but max_position_embeddings is " + c.maxPositions());
      }
    }
    NDArray posIds = ctx.manager().create(positions).toType(ai.djl.ndarray.types.DataType.INT64, false);
    return m.embed(ctx, prefix + "word_embeddings.weight", ids).add(m.embed(ctx, prefix + "position_embeddings.weight", posIds));
  }

  /** The heads (B, nh, T, hd) of projections {@code q}, {@code k} and {@code v} of h (B, T, H). */
  static NDArray[] qkv(LanguageModel m, ForwardContext ctx, NDArray h, String q, String k, String v) {
    ModelConfig c = m.config();
    return new NDArray[] {Ops.heads(m.linear(ctx, h, q), c.heads(), c.headDim()), Ops.heads(m.linear(ctx, h, k), c.heads(), c.headDim()),
        Ops.heads(m.linear(ctx, h, v), c.heads(), c.headDim())};
  }

  static List<ParamSpec> layerNorm(String name, int h) {
    return List.of(new ParamSpec(name + ".weight", new long[] {h}, false), new ParamSpec(name + ".bias", new long[] {h}, false));
  }

  static NDArray layerNorm(LanguageModel m, ForwardContext ctx, String name, NDArray x) {
    return Ops.layerNorm(x, m.param(ctx, name + ".weight"), m.param(ctx, name + ".bias"), m.config().normEps());
  }

  /**
   * The rest of layer i after attention (BertSelfOutput, BertIntermediate, BertOutput):
   * h1 = LN(h + dropout(dense(a))), then LN(h1 + dropout(dense(gelu(dense(h1))))). a (B, T, H). The
   * dropouts are hidden_dropout_prob's, in train mode.
   */
  static NDArray rest(LanguageModel m, ForwardContext ctx, String p, NDArray h, NDArray a) {
    Dropout.Site attentionOut = new Dropout.Site(p + "attention.output.dropout", hiddenDropout(m.config()));
    NDArray h1 = layerNorm(m, ctx, p + "attention.output.LayerNorm", ctx.drop(m.linear(ctx, a, p + "attention.output.dense"), attentionOut).add(h));
    NDArray mid = Activation.gelu(m.linear(ctx, h1, p + "intermediate.dense")); // exact (erf) GELU, ACT2FN["gelu"]
    Dropout.Site out = new Dropout.Site(p + "output.dropout", hiddenDropout(m.config()));
    return layerNorm(m, ctx, p + "output.LayerNorm", ctx.drop(m.linear(ctx, mid, p + "output.dense"), out).add(h1));
  }

  /** hidden_dropout_prob (BertConfig's default 0.1): the embeddings', the two residual branches' and, unless said otherwise, the classifier's dropout. */
  static double hiddenDropout(ModelConfig c) {
    return c.dropout("hidden_dropout_prob", 0.1);
  }

  /** attention_probs_dropout_prob (default 0.1): dropout on the attention probabilities. */
  static double attentionProbsDropout(ModelConfig c) {
    return c.dropout("attention_probs_dropout_prob", 0.1);
  }

  /** The classifier's dropout: classifier_dropout, or hidden_dropout_prob when it is null (BERT, RoBERTa). */
  static double classifierDropout(ModelConfig c) {
    return c.dropout("classifier_dropout", hiddenDropout(c));
  }

  /**
   * Additive mask (B|1, 1, T, T) of a bidirectional encoder: every query sees every key of its own
   * segment. A classification batch puts padding in a segment of its own, so real tokens never see
   * it, which is what the attention_mask of transformers' encoders does for the tokens that matter.
   */
  static NDArray mask(NDManager m, int batch, int t, Optional<int[][]> segments, DataType dtype) {
    int rows = segments.isPresent() ? batch : 1;
    float[] v = new float[rows * t * t];
    for (int b = 0; b < rows && segments.isPresent(); b++) {
      int[] seg = segments.get()[b];
      for (int i = 0; i < t; i++) {
        for (int j = 0; j < t; j++) {
          v[(b * t + i) * t + j] = seg[i] == seg[j] ? 0f : (float) Ops.MASKED;
        }
      }
    }
    return m.create(v, new Shape(rows, 1, t, t)).toType(dtype, false);
  }

  /** The first token's state (B, H) of h (B, T, H): &lt;s&gt; / [CLS], which both heads read. */
  static NDArray first(NDArray h) {
    return h.get(new NDIndex(":, 0, :"));
  }

  /** y = x·Wᵀ + b for a head Linear kept in HF layout (out, in). */
  static NDArray headLinear(LanguageModel m, ForwardContext ctx, NDArray x, String name) {
    return LanguageModel.addmm(m.param(ctx, name + ".bias"), x, m.param(ctx, name + ".weight"));
  }

  /** A head Linear's tensors in HF layout (out, in), not transposed: they are trained whole and saved as they are. */
  static List<ParamSpec> headLinearParams(String name, int in, int out) {
    return List.of(new ParamSpec(name + ".weight", new long[] {out, in}, false), new ParamSpec(name + ".bias", new long[] {out}, false));
  }

  /** An encoder refuses the decoder-only uses: a KV cache (generation) means a causal LM was expected. */
  static void refuseCache(ModelConfig c, Optional<KvCache> cache) {
    if (cache.isPresent()) {
      throw new IllegalArgumentException("model_type " + c.modelType() + " is an encoder with a sequence-classification head: it classifies, "
          + "it does not generate; use eval, or a causal LM for generate and serve");
    }
  }

  /**
   * The embeddings' last steps under {@code prefix} ("roberta.embeddings."): the token types'
   * embedding added when the model has token types (none given: type 0 everywhere, which is also
   * what RoBERTa's tokenizers give pairs; each must be below type_vocab_size), then LayerNorm and,
   * in train mode, hidden_dropout_prob's dropout. e (B, T, H).
   */
  static NDArray finishEmbeddings(LanguageModel m, ForwardContext ctx, String prefix, NDArray e, int typeVocab, Optional<int[][]> tokenTypes) {
    if (typeVocab > 0) {
      Shape bt = new Shape(e.getShape().get(0), e.getShape().get(1));
      NDArray types = ctx.manager().zeros(bt, DataType.INT64);
      if (tokenTypes.isPresent()) {
        int[][] tt = tokenTypes.get();
        for (int b = 0; b < tt.length; b++) {
          for (int i = 0; i < tt[b].length; i++) {
            if (tt[b][i] < 0 || tt[b][i] >= typeVocab) {
              throw new IllegalArgumentException("row " + b + ", token " + i + " has token type " + tt[b][i] + " but " + m.config().modelType()
                  + "'s type_vocab_size is " + typeVocab + ", expected 0.." + (typeVocab - 1));
            }
          }
        }
        types = ctx.manager().create(tt).toType(DataType.INT64, false);
      }
      e = e.add(m.embed(ctx, prefix + "token_type_embeddings.weight", types));
    } // type_vocab_size 0 (DeBERTa-v3): the tokenizer's token types are not read, as DebertaV2Embeddings reads none
    return ctx.drop(layerNorm(m, ctx, prefix + "LayerNorm", e), new Dropout.Site(prefix + "dropout", hiddenDropout(m.config())));
  }

  /**
   * The last hidden state (B, T, H) of an encoder whose layers are BERT's (RoBERTa, BERT):
   * embeddings, then each layer's q, k, v under bidirectional attention (padding lies in a segment
   * of its own; the probabilities dropped in train mode) and the rest of the layer. Its head on it gives the class logits.
   */
  static NDArray encode(Backbone e, LanguageModel m, ForwardContext ctx, NDArray ids, int[][] positions, Optional<int[][]> segments,
      Optional<int[][]> tokenTypes) {
    ModelConfig c = m.config();
    NDArray mask = mask(ctx.manager(), positions.length, positions[0].length, segments, m.dtype());
    NDArray h = e.embed(m, ctx, ids, positions, tokenTypes);
    for (int i = 0; i < c.layers(); i++) {
      NDArray[] qkv = e.qkv(m, ctx, i, h, new NDArray[0]);
      Dropout.Site probs = e.attentionDropout(c, i);
      h = e.rest(m, ctx, i, h, Ops.attention(qkv[0], qkv[1], qkv[2], mask, a -> ctx.drop(a, probs)));
    }
    return h;
  }
}
