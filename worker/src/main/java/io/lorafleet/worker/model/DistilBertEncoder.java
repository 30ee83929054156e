package io.lorafleet.worker.model;

import ai.djl.ndarray.NDArray;
import ai.djl.nn.Activation;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * DistilBertForSequenceClassification, following transformers' modeling_distilbert.py: Embeddings
 * (word + learned position, numbered from 0, then LayerNorm; no token types, so a pair's type ids
 * are not read); TransformerBlocks of MultiHeadSelfAttention (q_lin, k_lin, v_lin, out_lin under
 * bidirectional attention), sa_layer_norm(out_lin(a) + x), then output_layer_norm(lin2(gelu(lin1(h)))
 * + h); the head classifier(relu(pre_classifier(h[:, 0]))). Keys carry the "distilbert." prefix of
 * the ForSequenceClassification and ForMaskedLM classes (whose vocab_* head is not read); a
 * DistilBertModel checkpoint without it loads too.
 *
 * <p>As PEFT does for SEQ_CLS, only {@code classifier} is trained whole; pre_classifier is a frozen
 * base tensor unless modules_to_save names it, and one missing from the checkpoint (distilbert-base
 * saves none) is initialized as transformers' _init_weights does, which
 * {@link #initializedWhenMissing} says. LayerNorm's epsilon is 1e-12, as the modeling file fixes it.
 */
final class DistilBertEncoder extends EncoderBackbone {
  static final String PREFIX = "distilbert.";
  static final String PRE_CLASSIFIER = "pre_classifier";

  static String layer(int i) {
    return PREFIX + "transformer.layer." + i + ".";
  }

  @Override
  public List<LinearSpec> linears(ModelConfig c) {
    List<LinearSpec> out = new ArrayList<>();
    int h = c.hidden();
    for (int i = 0; i < c.layers(); i++) {
      String p = layer(i);
      String x = p + "attention"; // q, k and v read the block input
      out.add(new LinearSpec(p + "attention.q_lin", i, h, h, true, x));
      out.add(new LinearSpec(p + "attention.k_lin", i, h, h, true, x));
      out.add(new LinearSpec(p + "attention.v_lin", i, h, h, true, x));
      out.add(new LinearSpec(p + "attention.out_lin", i, h, h, true));
      out.add(new LinearSpec(p + "ffn.lin1", i, h, c.intermediate(), true));
      out.add(new LinearSpec(p + "ffn.lin2", i, c.intermediate(), h, true));
    }
    return out;
  }

  @Override
  public List<ParamSpec> params(ModelConfig c) {
    List<ParamSpec> out = new ArrayList<>();
    int h = c.hidden();
    out.add(new ParamSpec(PREFIX + "embeddings.word_embeddings.weight", new long[] {c.vocabSize(), h}, false));
    out.add(new ParamSpec(PREFIX + "embeddings.position_embeddings.weight", new long[] {c.maxPositions(), h}, false));
    out.addAll(EncoderBlocks.layerNorm(PREFIX + "embeddings.LayerNorm", h));
    for (LinearSpec l : linears(c)) {
      out.add(new ParamSpec(l.name() + ".weight", new long[] {l.out(), l.in()}, true));
      out.add(new ParamSpec(l.name() + ".bias", new long[] {l.out()}, false));
      if (l.name().endsWith("attention.out_lin")) {
        out.addAll(EncoderBlocks.layerNorm(layer(l.layer()) + "sa_layer_norm", h));
      } else if (l.name().endsWith("ffn.lin2")) {
        out.addAll(EncoderBlocks.layerNorm(layer(l.layer()) + "output_layer_norm", h));
      }
    }
    out.addAll(EncoderBlocks.headLinearParams(PRE_CLASSIFIER, h, h));
    out.addAll(headParams(c));
    return out;
  }

  @Override
  public List<ParamSpec> headParams(ModelConfig c) {
    return EncoderBlocks.headLinearParams("classifier", c.hidden(), c.numLabels());
  }

  @Override
  public List<String> initializedWhenMissing(ModelConfig c) {
    List<String> out = new ArrayList<>(List.of(PRE_CLASSIFIER + ".weight", PRE_CLASSIFIER + ".bias"));
    headParams(c).forEach(p -> out.add(p.name()));
    return out;
  }

  @Override
  public String sequenceClassifierClass(ModelConfig c) {
    return "DistilBertForSequenceClassification";
  }

  /** dropout(LayerNorm(word + position)), positions from 0; token types are not read (DistilBERT has none). */
  @Override
  public NDArray embed(LanguageModel m, ForwardContext ctx, NDArray ids, int[][] positions, Optional<int[][]> tokenTypes) {
    NDArray e = EncoderBlocks.layerNorm(m, ctx, PREFIX + "embeddings.LayerNorm", EncoderBlocks.wordAndPosition(m, ctx, PREFIX + "embeddings.", ids, positions));
    return ctx.drop(e, new Dropout.Site(PREFIX + "embeddings.dropout", dropout(m.config())));
  }

  /** DistilBertConfig's dropout (default 0.1): the embeddings' and the feed-forward output's. */
  private static double dropout(ModelConfig c) {
    return c.dropout("dropout", 0.1);
  }

  /** MultiHeadSelfAttention's dropout on the probabilities: attention_dropout (default 0.1). */
  @Override
  public Dropout.Site attentionDropout(ModelConfig c, int i) {
    return new Dropout.Site(layer(i) + "attention.dropout", c.dropout("attention_dropout", 0.1));
  }

  @Override
  public NDArray[] qkv(LanguageModel m, ForwardContext ctx, int i, NDArray h, NDArray[] tables) {
    String p = layer(i) + "attention.";
    return EncoderBlocks.qkv(m, ctx, h, p + "q_lin", p + "k_lin", p + "v_lin");
  }

  /** h1 = sa_layer_norm(out_lin(a) + h), then output_layer_norm(dropout(lin2(gelu(lin1(h1)))) + h1). a (B, T, H). */
  @Override
  public NDArray rest(LanguageModel m, ForwardContext ctx, int i, NDArray h, NDArray a) {
    String p = layer(i);
    NDArray h1 = EncoderBlocks.layerNorm(m, ctx, p + "sa_layer_norm", m.linear(ctx, a, p + "attention.out_lin").add(h));
    NDArray mid = Activation.gelu(m.linear(ctx, h1, p + "ffn.lin1")); // exact (erf) GELU, get_activation("gelu")
    NDArray ffn = ctx.drop(m.linear(ctx, mid, p + "ffn.lin2"), new Dropout.Site(p + "ffn.dropout", dropout(m.config())));
    return EncoderBlocks.layerNorm(m, ctx, p + "output_layer_norm", ffn.add(h1));
  }

  @Override
  NDArray encode(LanguageModel m, ForwardContext ctx, NDArray ids, int[][] positions, Optional<int[][]> segments, Optional<int[][]> tokenTypes) {
    return EncoderBlocks.encode(this, m, ctx, ids, positions, segments, tokenTypes);
  }

  /** classifier(dropout(relu(pre_classifier(h[:, 0])))), the dropout seq_classif_dropout's (default 0.2): (B, T, H) → (B, num_labels). */
  @Override
  public NDArray head(LanguageModel m, ForwardContext ctx, NDArray h) {
    NDArray pooled = Activation.relu(EncoderBlocks.headLinear(m, ctx, EncoderBlocks.first(h), PRE_CLASSIFIER));
    pooled = ctx.drop(pooled, new Dropout.Site("dropout", m.config().dropout("seq_classif_dropout", 0.2)));
    return EncoderBlocks.headLinear(m, ctx, pooled, "classifier");
  }
}
