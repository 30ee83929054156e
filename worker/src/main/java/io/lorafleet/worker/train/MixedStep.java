package io.lorafleet.worker.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import io.lorafleet.worker.flat.Trainable;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.lora.MixedDelta;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.model.Dropout;
import io.lorafleet.worker.model.ForwardContext;
import io.lorafleet.worker.model.LanguageModel;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * One forward and one backward pass over a batch whose rows belong to several adapters trained on
 * one frozen base (multi-LoRA training, as mLoRA batches jobs over a shared base): the rows of each
 * part are one contiguous segment, the base projections run once for the whole batch, and each
 * segment adds its own adapter's term ({@link MixedDelta}). The loss is the sum of the parts' loss
 * sums; a part's adapter touches its own rows only, so the gradient of its leaves is the gradient
 * of its own loss sum, as its plain {@link TrainStep} computes it (to rounding: the base's matmuls
 * see more rows). Each row keeps its own dropout masks: LoRA's from its part's plan, the base
 * model's from the row's part's seed ({@link Dropout#concat}). A part whose gradient is not finite
 * fails alone; the others' stand.
 */
public final class MixedStep {
  private MixedStep() {}

  /** One adapter's share of the batch: its model over the shared base, its values, its rows and its dropout. */
  public record Part(LoraModel lora, float[] params, Batch batch, Dropout.Plan dropout) {}

  /** A part's result: its gradient and loss sums, or why its gradient was not finite. */
  public record Outcome(Optional<StepResult> result, Optional<NonFiniteGradientException> nonFinite) {
    /** The result, or the non-finite gradient thrown. */
    public StepResult get() {
      if (nonFinite.isPresent()) {
        throw nonFinite.get();
      }
      return result.orElseThrow();
    }
  }

  /**
   * Whether {@code lora}'s rows can join a mixed batch: an additive term on each projection (not DoRA,
   * VeRA, AdaLoRA or trained biases and heads) over causal or classification rows that are not packed.
   */
  public static boolean mixable(LoraModel lora, Batch batch) {
    return MixedDelta.unmixable(lora).isEmpty() && batch.segmentIds().isEmpty();
  }

  /**
   * The parts' forward and backward in one pass, back-propagating {@code lossScale} times the summed
   * loss (fp16 loss scaling); every part must be {@link #mixable} and share the base.
   */
  public static List<Outcome> run(List<Part> parts, double lossScale) {
    LanguageModel base = parts.get(0).lora().base();
    for (Part p : parts) {
      if (p.lora().base() != base || !mixable(p.lora(), p.batch())) {
        throw new IllegalArgumentException("a mixed step needs mixable adapters over one base");
      }
    }
    Batch batch = Batch.concat(parts.stream().map(Part::batch).toList());
    try (NDManager step = base.manager().newSubManager()) {
      List<Trainable.Bound> bound = new ArrayList<>();
      List<NDArray> lossSums = new ArrayList<>();
      boolean gradMode = JniUtils.isGradMode();
      JniUtils.setGradMode(true);
      try {
        List<MixedDelta.Segment> segments = new ArrayList<>();
        List<Dropout> masks = new ArrayList<>();
        int start = 0;
        for (Part p : parts) {
          // the part's plan over its rows, keyed even when it drops nothing, so that the stacked masks keep every row's key
          Dropout d = new Dropout(p.dropout().seed(), p.batch().rowKeys(), p.dropout().model());
          masks.add(d);
          // bind with grad mode on: views of the leaves (transposes) must be recorded by autograd
          Trainable.Bound b = p.lora().bind(step, p.params(), true, d);
          bound.add(b);
          segments.add(new MixedDelta.Segment(start, start + p.batch().size(), Optional.of(b.context().delta())));
          start += p.batch().size();
        }
        ForwardContext ctx = new ForwardContext(step, Map.of(), new MixedDelta(segments), Dropout.concat(masks));
        NDArray logits = base.forward(ctx, batch); // (B, T, V) over every part's rows
        NDArray total = null;
        start = 0;
        for (Part p : parts) {
          int end = start + p.batch().size();
          NDArray mine = logits.get(new NDIndex("{}:{}", start, end));
          NDArray loss = TrainStep.lossSum(step, mine, batch.rows(start, end));
          lossSums.add(loss);
          total = total == null ? loss : total.add(loss);
          start = end;
        }
        JniUtils.backward((PtNDArray) total, (PtNDArray) TrainStep.seedGradient(step, total, lossScale), false, false);
      } finally {
        JniUtils.setGradMode(gradMode);
      }
      List<Outcome> out = new ArrayList<>();
      for (int i = 0; i < parts.size(); i++) {
        Part p = parts.get(i);
        double loss = TokenLoss.value(lossSums.get(i));
        float[] grad = new float[p.lora().layout().size()];
        try {
          TrainStep.collect(p.lora(), bound.get(i), grad, loss);
          out.add(new Outcome(Optional.of(new StepResult(grad, loss, p.batch().targetTokens())), Optional.empty()));
        } catch (NonFiniteGradientException e) {
          out.add(new Outcome(Optional.empty(), Optional.of(e)));
        }
      }
      return out;
    }
  }
}
