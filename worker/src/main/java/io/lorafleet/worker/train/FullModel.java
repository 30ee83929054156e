package io.lorafleet.worker.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.lorafleet.worker.flat.FlatLayout;
import io.lorafleet.worker.flat.Trainable;
import io.lorafleet.worker.model.Dropout;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.ForwardContext;
import io.lorafleet.worker.model.LinearDelta;
import io.lorafleet.worker.model.Ops;
import io.lorafleet.worker.model.ParamSpec;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Full fine-tuning: every base tensor is trainable, laid out in checkpoint order and HF shape. It
 * exists to measure LoRA against, and to pre-train the demo's small base model.
 */
public final class FullModel implements Trainable {
  private final LanguageModel base;
  private final FlatLayout layout;

  public FullModel(LanguageModel base) {
    if (base.isQuantized()) {
      throw new IllegalArgumentException("full fine-tuning needs a full-precision base, but this one is stored " + base.quantization()
          + "; train LoRA over it (QLoRA), or load it without --quantize");
    }
    this.base = base;
    FlatLayout.Builder b = FlatLayout.builder();
    base.params().forEach(p -> b.add(p.name(), p.hfShape()));
    this.layout = b.build();
  }

  @Override
  public LanguageModel base() {
    return base;
  }

  @Override
  public FlatLayout layout() {
    return layout;
  }

  /** The base's current values in HF layout. */
  public float[] currentParams() {
    float[] flat = new float[layout.size()];
    for (FlatLayout.Slot s : layout.slots()) {
      System.arraycopy(base.hfTensor(s.key()).toFloatArray(), 0, flat, s.offset(), s.size());
    }
    return flat;
  }

  @Override
  public Bound bind(NDManager step, float[] flat, boolean grad, Dropout dropout) {
    List<NDArray> leaves = new ArrayList<>();
    Map<String, NDArray> overrides = new HashMap<>();
    for (FlatLayout.Slot s : layout.slots()) {
      NDArray leaf = Trainable.leaf(step, layout, flat, s, base.dtype(), grad);
      leaves.add(leaf);
      NDArray used = Ops.cast(leaf, base.dtype()); // an fp32 master, cast in the graph under fp16 compute
      ParamSpec p = base.paramSpec(s.key()).orElseThrow();
      overrides.put(s.key(), p.transposed() ? used.transpose() : used); // the transpose is a view inside the graph
    }
    return new Bound(new ForwardContext(step, overrides, LinearDelta.NONE, dropout), leaves);
  }
}
