package io.lorafleet.worker.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import io.lorafleet.worker.flat.Trainable;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.model.Dropout;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.Segments;
import java.util.List;

/**
 * A training step whose activation memory stays flat with sequence length (Llama family, GPT-2),
 * by recomputing in its backward pass what its forward pass dropped. (transformers calls this
 * gradient checkpointing, and the flag keeps that name, --gradient-checkpointing; in lorafleet's
 * names a checkpoint is always a run's saved state, checkpoint-N/.) The gradient equals
 * {@link TrainStep}'s; what changes is what is held at once:
 * <ul>
 *   <li>activation checkpointing per layer (Chen et al. 2016): the forward pass runs without a graph
 *       and keeps only each layer's input (B, T, H); the backward pass recomputes one layer at a time
 *       with its graph and back-propagates the output gradient through it. Dropout masks, LoRA's
 *       and the model's own, are drawn from (seed, row, module, element), so the recomputation
 *       applies the same masks;
 *   <li>blockwise attention: queries are taken {@code attentionBlock} rows at a time against all
 *       keys, in the forward pass and again in the backward pass, where each block is recomputed and
 *       back-propagated on its own, so no (B, nh, T, T) scores or probabilities exist (each row's
 *       softmax is over all its keys, so blocking rows is exact). Causal, sliding-window and
 *       packed-segment masks are built per block, and so is the attention dropout's: the block's
 *       rows of the whole matrix's mask;
 *   <li>chunked cross-entropy: the output layer and loss run {@code lossChunk} tokens at a time,
 *       each chunk back-propagated at once into the last hidden state, so no (B, T, V) logits exist.
 * </ul>
 * DJL has no custom autograd functions, so the backward pass is driven by hand: detached leaves at
 * each boundary, {@code backward(output, gradient)} per piece, and the leaves' gradients carried to
 * the piece before. Every piece's arrays live in a manager of its own, closed when it is done.
 */
public final class RecomputeStep {
  /** Query rows per attention block and tokens per loss chunk. */
  public record Plan(int attentionBlock, int lossChunk) {
    public Plan {
      if (attentionBlock <= 0 || lossChunk <= 0) {
        throw new IllegalArgumentException("attention block and loss chunk must be > 0 but found " + attentionBlock + " and " + lossChunk);
      }
    }
  }

  /** The bytes one attention block's scores, or one loss chunk's logits, may take (fp32): 16 MiB. */
  public static final long PIECE_BYTES = 16L << 20;

  /**
   * A plan whose attention scores (B, nh, block, T) and chunk logits (B, chunk, V) each stay within
   * {@link #PIECE_BYTES}, so the transient memory of a step does not grow with T or V (at least 16 rows a piece).
   */
  public static Plan bounded(Batch batch, io.lorafleet.worker.model.ModelConfig c) {
    long b = batch.size();
    long t = batch.seqLen();
    int block = (int) Math.max(16, Math.min(t, PIECE_BYTES / (4L * b * c.heads() * t)));
    int chunk = (int) Math.max(16, Math.min(t, PIECE_BYTES / (4L * b * c.vocabSize())));
    return new Plan(block, chunk);
  }

  private RecomputeStep() {}

  /** As {@link TrainStep#run}, with bounded activation memory; each micro-batch gets a {@link #bounded} plan. */
  public static StepResult run(LoraModel lora, float[] params, List<Batch> microBatches, Dropout.Plan dropout, double lossScale) {
    return TrainStep.accumulate(lora, params, microBatches, dropout,
        (batch, masks, grad) -> microBatch(lora, params, batch, masks, grad, bounded(batch, lora.base().config()), lossScale));
  }

  /** With a given plan (tests use small pieces so that short rows take several). */
  public static StepResult run(LoraModel lora, float[] params, List<Batch> microBatches, Dropout.Plan dropout, Plan plan) {
    return TrainStep.accumulate(lora, params, microBatches, dropout, (batch, masks, grad) -> microBatch(lora, params, batch, masks, grad, plan, 1.0));
  }

  private static double microBatch(LoraModel lora, float[] params, Batch batch, Dropout masks, float[] grad, Plan plan, double lossScale) {
    LanguageModel m = lora.base();
    boolean gradMode = JniUtils.isGradMode();
    try (NDManager step = m.manager().newSubManager()) {
      JniUtils.setGradMode(true); // the leaves' views (transposes) must be recorded
      Trainable.Bound bound = lora.bind(step, params, true, masks);
      Segments seg = m.segments(bound.context(), batch);
      int layers = seg.layers();
      int t = seg.seqLen();

      // 1. Forward without a graph, keeping each layer's input.
      JniUtils.setGradMode(false);
      NDArray[] inputs = new NDArray[layers + 1];
      inputs[0] = seg.embed();
      for (int i = 0; i < layers; i++) {
        try (NDManager scope = step.newSubManager()) {
          NDArray h = moved(inputs[i].duplicate(), scope);
          NDArray[] qkv = seg.qkv(i, h);
          NDArray out = seg.rest(i, h, attention(seg, scope, i, qkv, t, plan.attentionBlock()));
          inputs[i + 1] = moved(out, step);
        }
      }

      // 2. The output layer and loss, a chunk of tokens at a time, each back-propagated at once.
      JniUtils.setGradMode(true);
      double loss = 0;
      NDArray dh;
      try (NDManager scope = step.newSubManager()) {
        NDArray last = leaf(inputs[layers], scope);
        for (int c0 = 0; c0 < t; c0 += plan.lossChunk()) {
          int c1 = Math.min(t, c0 + plan.lossChunk());
          try (NDManager chunk = scope.newSubManager()) {
            NDArray part = c0 == 0 && c1 == t ? last : moved(last.get(new NDIndex(":, {}:{}", c0, c1)), chunk);
            NDArray ls = TokenLoss.sum(chunk, seg.head(part), batch, c0);
            loss += TokenLoss.value(ls);
            backward(ls, TrainStep.seedGradient(chunk, ls, lossScale));
          }
        }
        dh = moved(last.getGradient(), step);
      }

      // 3. Layers in reverse: recompute each from its input and back-propagate dh through it.
      for (int i = layers - 1; i >= 0; i--) {
        try (NDManager scope = step.newSubManager()) {
          NDArray x = leaf(inputs[i], scope);
          NDArray[] qkv = seg.qkv(i, x); // q, k, v with their graph back to x and the projections' LoRA factors
          NDArray[] lv = {leaf(qkv[0], scope), leaf(qkv[1], scope), leaf(qkv[2], scope)};
          JniUtils.setGradMode(false);
          NDArray a = attention(seg, scope, i, lv, t, plan.attentionBlock());
          JniUtils.setGradMode(true);
          NDArray al = leaf(a, scope);
          backward(seg.rest(i, x, al), dh); // o_proj, the MLP and the residual path into x
          NDArray da = al.getGradient();
          for (int r0 = 0; r0 < t; r0 += plan.attentionBlock()) {
            int r1 = Math.min(t, r0 + plan.attentionBlock());
            try (NDManager block = scope.newSubManager()) {
              NDArray out = seg.attend(block, i, lv[0], lv[1], lv[2], r0, r1);
              backward(out, r0 == 0 && r1 == t ? da : moved(da.get(new NDIndex(":, {}:{}", r0, r1)), block));
            }
          }
          // q, k and v back through their projections: d(Σ q·dq + k·dk + v·dv) gives the same gradients
          NDArray s = qkv[0].mul(lv[0].getGradient()).sum().add(qkv[1].mul(lv[1].getGradient()).sum()).add(qkv[2].mul(lv[2].getGradient()).sum());
          backward(s, scope.ones(s.getShape(), s.getDataType()));
          NDArray next = moved(x.getGradient(), step);
          dh.close();
          dh = next;
        }
        inputs[i + 1].close();
      }
      TrainStep.collect(lora, bound, grad, loss);
      return loss;
    } finally {
      JniUtils.setGradMode(gradMode);
    }
  }

  /**
   * Layer {@code layer}'s attention output (B, T, nh·hd), a block of query rows at a time (with the current grad
   * mode); each block's arrays are freed before the next, and only its output is kept, in {@code scope}.
   */
  private static NDArray attention(Segments seg, NDManager scope, int layer, NDArray[] qkv, int t, int blockRows) {
    ai.djl.ndarray.NDList parts = new ai.djl.ndarray.NDList();
    for (int r0 = 0; r0 < t; r0 += blockRows) {
      try (NDManager block = scope.newSubManager()) {
        parts.add(moved(seg.attend(block, layer, qkv[0], qkv[1], qkv[2], r0, Math.min(t, r0 + blockRows)), scope));
      }
    }
    return parts.size() == 1 ? parts.get(0) : ai.djl.ndarray.NDArrays.concat(parts, 1);
  }

  /** A detached copy of {@code a} that autograd treats as a leaf, in {@code scope}. */
  private static NDArray leaf(NDArray a, NDManager scope) {
    NDArray l = moved(a.stopGradient(), scope);
    l.setRequiresGradient(true);
    return l;
  }

  private static NDArray moved(NDArray a, NDManager scope) {
    a.attach(scope);
    return a;
  }

  private static void backward(NDArray out, NDArray gradOut) {
    JniUtils.backward((PtNDArray) out, (PtNDArray) gradOut, false, false);
  }
}
