package io.lorafleet.worker.train;

import ai.djl.ndarray.NDManager;
import io.lorafleet.worker.flat.FlatLayout;
import io.lorafleet.worker.flat.Trainable;
import io.lorafleet.worker.model.Dropout;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.ForwardContext;
import io.lorafleet.worker.model.LinearDelta;
import java.util.List;

/** The base alone, nothing trainable: evaluating a base (or a merged model) through the same path as adapters. */
public final class FrozenModel implements Trainable {
  private static final FlatLayout EMPTY = FlatLayout.builder().build();
  private final LanguageModel base;

  public FrozenModel(LanguageModel base) {
    this.base = base;
  }

  @Override
  public LanguageModel base() {
    return base;
  }

  @Override
  public FlatLayout layout() {
    return EMPTY;
  }

  @Override
  public Bound bind(NDManager step, float[] flat, boolean grad, Dropout dropout) {
    return new Bound(ForwardContext.inference(step, LinearDelta.NONE), List.of());
  }
}
