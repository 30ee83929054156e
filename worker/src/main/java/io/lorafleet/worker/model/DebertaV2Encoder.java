package io.lorafleet.worker.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.Activation;
import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Optional;

/**
 * DebertaV2ForSequenceClassification (DeBERTa v2 and v3), following transformers'
 * modeling_deberta_v2.py. Attention is disentangled (He et al. 2021, eq. 2-4): besides content to
 * content, q_i·k_j, each score adds content to position, q_i·K^r_δ(i,j), and position to content,
 * k_j·Q^r_δ(i,j), where δ(i,j) = clamp(bucket(i − j) + span, 0, 2·span − 1) indexes the shared
 * relative embeddings (encoder.rel_embeddings, LayerNorm'd when norm_rel_ebd says layer_norm), and
 * every term is divided by √(head_dim · (1 + #terms)). bucket is make_log_bucket_position: exact
 * within ±position_buckets/2, logarithmic beyond, up to max_relative_positions. With share_att_key
 * (v3) K^r and Q^r come from key_proj and query_proj themselves, so LoRA on them moves the position
 * terms too; otherwise from pos_key_proj and pos_query_proj. The head is ContextPooler
 * (act(dense(h[:, 0])), pooler_hidden_act) and the classifier. Dropout is off, as in eval mode.
 *
 * <p>With conv_kernel_size (v2 xlarge and xxlarge, the LoRA paper's DeBERTa XXL), ConvLayer runs
 * after the first layer: LN(h1 + act(conv1d(embeddings))), masked, where the convolution reads the
 * embeddings (padding zeroed, as DebertaV2Embeddings multiplies by the mask) with same padding.
 */
final class DebertaV2Encoder extends EncoderBackbone {
  static final String PREFIX = "deberta.";

  /** The relative-attention settings of a DebertaV2Config. */
  record Relative(boolean on, int span, int buckets, int maxRelative, boolean c2p, boolean p2c, boolean shareKey, boolean normEmbeddings) {
    static Relative of(ModelConfig c) {
      JsonNode r = c.raw();
      int maxRel = r.path("max_relative_positions").asInt(-1);
      if (maxRel < 1) {
        maxRel = c.maxPositions();
      }
      int buckets = r.path("position_buckets").asInt(-1);
      List<String> types = new ArrayList<>();
      JsonNode t = r.path("pos_att_type");
      if (t.isArray()) {
        t.forEach(x -> types.add(x.asText().trim().toLowerCase(Locale.ROOT)));
      } else if (t.isTextual()) {
        for (String x : t.asText().split("\\|")) {
          types.add(x.trim().toLowerCase(Locale.ROOT));
        }
      }
      for (String x : types) {
        if (!x.equals("c2p") && !x.equals("p2c") && !x.isEmpty()) {
          throw new IllegalArgumentException("pos_att_type holds '" + x + "', expected c2p and/or p2c");
        }
      }
      boolean on = r.path("relative_attention").asBoolean(false);
      boolean norm = List.of(r.path("norm_rel_ebd").asText("none").toLowerCase(Locale.ROOT).split("\\|")).stream().map(String::trim).anyMatch("layer_norm"::equals);
      return new Relative(on, buckets > 0 ? buckets : maxRel, buckets, maxRel, on && types.contains("c2p"), on && types.contains("p2c"),
          r.path("share_att_key").asBoolean(false), on && norm);
    }
  }

  private static String layer(int i) {
    return PREFIX + "encoder.layer." + i + ".";
  }

  private static boolean positionBiasedInput(ModelConfig c) {
    return c.raw().path("position_biased_input").asBoolean(true);
  }

  private static int typeVocab(ModelConfig c) {
    return c.raw().path("type_vocab_size").asInt(0);
  }

  private static int convKernel(ModelConfig c) {
    return c.raw().path("conv_kernel_size").asInt(0);
  }

  @Override
  public List<LinearSpec> linears(ModelConfig c) {
    Relative rel = Relative.of(c);
    List<LinearSpec> out = new ArrayList<>();
    int h = c.hidden();
    for (int i = 0; i < c.layers(); i++) {
      String p = layer(i);
      String x = p + "attention.self";
      out.add(new LinearSpec(p + "attention.self.query_proj", i, h, h, true, x));
      out.add(new LinearSpec(p + "attention.self.key_proj", i, h, h, true, x));
      out.add(new LinearSpec(p + "attention.self.value_proj", i, h, h, true, x));
      if (!rel.shareKey() && rel.c2p()) {
        out.add(new LinearSpec(p + "attention.self.pos_key_proj", i, h, h, true, x + ".rel"));
      }
      if (!rel.shareKey() && rel.p2c()) {
        out.add(new LinearSpec(p + "attention.self.pos_query_proj", i, h, h, true, x + ".rel"));
      }
      out.addAll(EncoderBlocks.blockLinears(c, p, i));
    }
    return out;
  }

  @Override
  public List<ParamSpec> params(ModelConfig c) {
    Relative rel = Relative.of(c);
    List<ParamSpec> out = new ArrayList<>();
    int h = c.hidden();
    out.add(new ParamSpec(PREFIX + "embeddings.word_embeddings.weight", new long[] {c.vocabSize(), h}, false));
    if (positionBiasedInput(c)) {
      out.add(new ParamSpec(PREFIX + "embeddings.position_embeddings.weight", new long[] {c.maxPositions(), h}, false));
    }
    if (typeVocab(c) > 0) {
      out.add(new ParamSpec(PREFIX + "embeddings.token_type_embeddings.weight", new long[] {typeVocab(c), h}, false));
    }
    out.addAll(EncoderBlocks.layerNorm(PREFIX + "embeddings.LayerNorm", h));
    if (rel.on()) {
      out.add(new ParamSpec(PREFIX + "encoder.rel_embeddings.weight", new long[] {2L * rel.span(), h}, false));
    }
    if (rel.normEmbeddings()) {
      out.addAll(EncoderBlocks.layerNorm(PREFIX + "encoder.LayerNorm", h));
    }
    if (convKernel(c) > 0) { // ConvLayer: nn.Conv1d(H, H, k, groups) (out, in/groups, k), then LayerNorm
      out.add(new ParamSpec(PREFIX + "encoder.conv.conv.weight", new long[] {h, h / c.raw().path("conv_groups").asInt(1), convKernel(c)}, false));
      out.add(new ParamSpec(PREFIX + "encoder.conv.conv.bias", new long[] {h}, false));
      out.addAll(EncoderBlocks.layerNorm(PREFIX + "encoder.conv.LayerNorm", h));
    }
    out.addAll(EncoderBlocks.linearParams(c, linears(c)));
    out.addAll(headParams(c));
    return out;
  }

  /** ContextPooler's dense and the classifier. */
  @Override
  public List<ParamSpec> headParams(ModelConfig c) {
    int pooled = c.raw().path("pooler_hidden_size").asInt(c.hidden());
    if (pooled != c.hidden()) {
      throw new IllegalArgumentException("pooler_hidden_size " + pooled + " is not supported, expected hidden_size " + c.hidden()
          + " (the classifier reads hidden_size features)");
    }
    List<ParamSpec> out = new ArrayList<>(EncoderBlocks.headLinearParams("pooler.dense", c.hidden(), c.hidden()));
    out.addAll(EncoderBlocks.headLinearParams("classifier", c.hidden(), c.numLabels()));
    return out;
  }

  /** LayerNorm(word [+ absolute position when position_biased_input] [+ token type 0]). */
  @Override
  public NDArray embed(LanguageModel m, ForwardContext ctx, NDArray ids, int[][] positions, Optional<int[][]> tokenTypes) {
    ModelConfig c = m.config();
    NDArray e = m.embed(ctx, PREFIX + "embeddings.word_embeddings.weight", ids);
    if (positionBiasedInput(c)) {
      for (int[] row : positions) {
        if (row.length > 0 && row[row.length - 1] >= c.maxPositions()) {
          throw new IllegalArgumentException("a row has " + row.length + " tokens but max_position_embeddings is " + c.maxPositions());
        }
      }
      e = e.add(m.embed(ctx, PREFIX + "embeddings.position_embeddings.weight", ctx.manager().create(positions).toType(DataType.INT64, false)));
    }
    return EncoderBlocks.finishEmbeddings(m, ctx, PREFIX + "embeddings.", e, typeVocab(c), tokenTypes);
  }

  @Override
  public NDArray[] qkv(LanguageModel m, ForwardContext ctx, int i, NDArray h, NDArray[] tables) {
    ModelConfig c = m.config();
    String p = layer(i) + "attention.self.";
    return new NDArray[] {Ops.heads(m.linear(ctx, h, p + "query_proj"), c.heads(), c.headDim()),
        Ops.heads(m.linear(ctx, h, p + "key_proj"), c.heads(), c.headDim()), Ops.heads(m.linear(ctx, h, p + "value_proj"), c.heads(), c.headDim())};
  }

  @Override
  public NDArray rest(LanguageModel m, ForwardContext ctx, int i, NDArray h, NDArray a) {
    return EncoderBlocks.rest(m, ctx, layer(i), h, a);
  }

  /**
   * ContextPooler then the classifier, classifier(dropout(act(dense(dropout(h[:, 0]))))): (B, T', H) → (B, num_labels).
   * The pooler's dropout is pooler_dropout (default 0), the classifier's cls_dropout or, when it is absent, hidden_dropout_prob.
   */
  @Override
  public NDArray head(LanguageModel m, ForwardContext ctx, NDArray h) {
    ModelConfig c = m.config();
    NDArray context = ctx.drop(EncoderBlocks.first(h), new Dropout.Site("pooler.dropout", c.dropout("pooler_dropout", 0.0)));
    NDArray pooled = EncoderBlocks.headLinear(m, ctx, context, "pooler.dense");
    String act = m.config().raw().path("pooler_hidden_act").asText("gelu");
    pooled = switch (act) {
      case "gelu" -> Activation.gelu(pooled);
      case "tanh" -> pooled.tanh();
      default -> throw new IllegalArgumentException("pooler_hidden_act '" + act + "' is not supported, expected gelu or tanh");
    };
    pooled = ctx.drop(pooled, new Dropout.Site("dropout", c.dropout("cls_dropout", EncoderBlocks.hiddenDropout(c))));
    return EncoderBlocks.headLinear(m, ctx, pooled, "classifier");
  }

  /**
   * make_log_bucket_position for one relative distance, in float32 as torch computes it: distances
   * within ±mid (mid = buckets/2) stay, others map to mid + ⌈log(|d|/mid) / log((max − 1)/mid) · (mid − 1)⌉ with d's sign.
   */
  static int bucket(int d, int buckets, int maxPosition) {
    if (buckets <= 0 || maxPosition <= 0) {
      return d;
    }
    int mid = buckets / 2;
    int abs = d < mid && d > -mid ? mid - 1 : Math.abs(d);
    if (abs <= mid) {
      return d;
    }
    float ratio = (float) Math.log((float) abs / mid) / (float) Math.log((float) ((maxPosition - 1) / (double) mid));
    float logPos = (float) Math.ceil(ratio * (mid - 1)) + mid;
    return (int) (logPos * Integer.signum(d));
  }

  /** δ(i, j) = clamp(bucket(i − j) + span, 0, 2·span − 1) as int64 (B, nh, T, T), or its transpose (the p2c index). */
  private static NDArray relativeIndex(NDManager m, Relative rel, int b, int nh, int t, boolean transposed) {
    long[] idx = new long[t * t];
    for (int i = 0; i < t; i++) {
      for (int j = 0; j < t; j++) {
        int d = bucket(i - j, rel.buckets(), rel.maxRelative()) + rel.span();
        idx[transposed ? j * t + i : i * t + j] = Math.max(0, Math.min(2 * rel.span() - 1, d));
      }
    }
    return m.create(idx, new Shape(1, 1, t, t)).broadcast(new Shape(b, nh, t, t));
  }

  /** What every layer's position terms read: the relative embeddings (1, 2·span, H), LayerNorm'd when asked, and the c2p and p2c gather indexes (B, nh, T, T). */
  private record Positions(NDArray embeddings, NDArray c2p, NDArray p2c) {
    static Positions of(LanguageModel m, ForwardContext ctx, Relative rel, int b, int t) {
      NDArray e = m.param(ctx, PREFIX + "encoder.rel_embeddings.weight").expandDims(0);
      if (rel.normEmbeddings()) {
        e = EncoderBlocks.layerNorm(m, ctx, PREFIX + "encoder.LayerNorm", e);
      }
      int nh = m.config().heads();
      return new Positions(e, relativeIndex(ctx.manager(), rel, b, nh, t, false), relativeIndex(ctx.manager(), rel, b, nh, t, true));
    }
  }

  @Override
  public String sequenceClassifierClass(ModelConfig c) {
    return "DebertaV2ForSequenceClassification";
  }

  /** The last hidden state (B, T, H); padding lies in a segment of its own. */
  @Override
  NDArray encode(LanguageModel m, ForwardContext ctx, NDArray ids, int[][] positions, Optional<int[][]> segments, Optional<int[][]> tokenTypes) {
    ModelConfig c = m.config();
    Relative rel = Relative.of(c);
    int b = positions.length;
    int t = positions[0].length;
    NDManager mg = ctx.manager();
    NDArray mask = EncoderBlocks.mask(mg, b, t, segments, m.dtype());
    double scale = 1.0 / Math.sqrt(c.headDim() * (1.0 + (rel.c2p() ? 1 : 0) + (rel.p2c() ? 1 : 0)));
    Optional<Positions> pos = rel.on() ? Optional.of(Positions.of(m, ctx, rel, b, t)) : Optional.empty(); // c2p and p2c imply rel.on()
    NDArray inputMask = inputMask(mg, positions, segments, m.dtype()); // (B, T, 1): 1 for the row's tokens, 0 for padding
    NDArray embeddings = embed(m, ctx, ids, positions, tokenTypes).mul(inputMask); // DebertaV2Embeddings: embeddings * mask
    NDArray h = embeddings;
    for (int i = 0; i < c.layers(); i++) {
      NDArray[] qkv = qkv(m, ctx, i, h, new NDArray[0]);
      NDArray q = qkv[0].mul(Ops.constant(qkv[0], scale)); // (B, nh, T, hd), scaled once for all terms
      NDArray scores = q.matMul(qkv[1].transpose(0, 1, 3, 2)); // (B, nh, T, T)
      String p = layer(i) + "attention.self.";
      NDArray relEmbeddings = pos.map(r -> positionDropout(ctx, r.embeddings(), p, b, c)).orElse(null);
      if (rel.c2p()) {
        Positions r = pos.orElseThrow();
        NDArray posKey = Ops.heads(m.linear(ctx, relEmbeddings, p + (rel.shareKey() ? "key_proj" : "pos_key_proj")), c.heads(), c.headDim()); // (1|B, nh, 2s, hd)
        scores = scores.add(q.matMul(posKey.transpose(0, 1, 3, 2)).gather(r.c2p(), 3)); // q_i · K^r_δ(i,j)
      }
      if (rel.p2c()) {
        Positions r = pos.orElseThrow();
        NDArray posQuery = Ops.heads(m.linear(ctx, relEmbeddings, p + (rel.shareKey() ? "query_proj" : "pos_query_proj")), c.heads(), c.headDim());
        NDArray k = qkv[1].mul(Ops.constant(qkv[1], scale));
        scores = scores.add(k.matMul(posQuery.transpose(0, 1, 3, 2)).gather(r.p2c(), 3).transpose(0, 1, 3, 2)); // k_j · Q^r_δ(i,j)
      }
      NDArray probs = ctx.drop(Ops.cast(Ops.wide(scores.add(mask)).softmax(-1), scores.getDataType()), attentionDropout(c, i));
      NDArray a = probs.matMul(qkv[2]); // (B, nh, T, hd)
      h = rest(m, ctx, i, h, a.transpose(0, 2, 1, 3).reshape(b, t, c.hidden()));
      if (i == 0 && convKernel(c) > 0) {
        h = conv(m, ctx, embeddings, h, inputMask);
      }
    }
    return h;
  }

  /** DisentangledSelfAttention's dropout on the probabilities: attention_probs_dropout_prob. */
  @Override
  public Dropout.Site attentionDropout(ModelConfig c, int i) {
    return new Dropout.Site(layer(i) + "attention.self.dropout", EncoderBlocks.attentionProbsDropout(c));
  }

  /**
   * The relative embeddings (1, 2·span, H) as layer {@code p}'s attention reads them: through its
   * pos_dropout (hidden_dropout_prob) in train mode. transformers draws one mask for the whole
   * batch there; here, in training, each row gets its own copy (B, 2·span, H) and draws its own
   * masks, this one and LoRA's dropout on the position projections that read it, so that a row's
   * masks do not depend on the rows beside it and N workers train what one does.
   */
  private static NDArray positionDropout(ForwardContext ctx, NDArray e, String p, int b, ModelConfig c) {
    Dropout.Site site = new Dropout.Site(p + "pos_dropout", EncoderBlocks.hiddenDropout(c));
    if (!ctx.dropout().on()) {
      return e;
    }
    Shape s = e.getShape();
    return ctx.drop(e.broadcast(new Shape(b, s.get(1), s.get(2))), site);
  }

  /** ConvLayer.forward(hidden_states = the embeddings, residual_states = layer 0's output, input_mask). e and h (B, T, H). */
  private static NDArray conv(LanguageModel m, ForwardContext ctx, NDArray e, NDArray h, NDArray inputMask) {
    ModelConfig c = m.config();
    int k = convKernel(c);
    NDArray out = ai.djl.nn.convolutional.Conv1d.conv1d(e.transpose(0, 2, 1), m.param(ctx, PREFIX + "encoder.conv.conv.weight"),
        m.param(ctx, PREFIX + "encoder.conv.conv.bias"), new Shape(1), new Shape((k - 1) / 2), new Shape(1), c.raw().path("conv_groups").asInt(1))
        .singletonOrThrow().transpose(0, 2, 1).mul(inputMask); // (B, T, H), padding's outputs zeroed (masked_fill)
    out = ctx.drop(out, new Dropout.Site(PREFIX + "encoder.conv.dropout", EncoderBlocks.hiddenDropout(c)));
    out = c.raw().path("conv_act").asText("tanh").equals("gelu") ? Activation.gelu(out) : out.tanh();
    return EncoderBlocks.layerNorm(m, ctx, PREFIX + "encoder.conv.LayerNorm", h.add(out)).mul(inputMask);
  }

  /** (B, T, 1): 1 where a token is the row's own (the segment of its first token), 0 for a classification batch's padding. */
  private static NDArray inputMask(NDManager mg, int[][] positions, Optional<int[][]> segments, DataType dtype) {
    int b = positions.length;
    int t = positions[0].length;
    float[] v = new float[b * t];
    for (int r = 0; r < b; r++) {
      for (int i = 0; i < t; i++) {
        v[r * t + i] = segments.isEmpty() || segments.get()[r][i] == segments.get()[r][0] ? 1f : 0f;
      }
    }
    return mg.create(v, new Shape(b, t, 1)).toType(dtype, false);
  }
}
