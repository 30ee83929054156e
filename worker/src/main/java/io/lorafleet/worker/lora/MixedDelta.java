package io.lorafleet.worker.lora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import io.lorafleet.worker.model.Dropout;
import io.lorafleet.worker.model.ForwardContext;
import io.lorafleet.worker.model.LinearDelta;
import io.lorafleet.worker.model.LinearSpec;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * Many unmerged adapters in one batch (S-LoRA, Punica's segmented gather): the rows of a batch are
 * ordered so that the rows of each adapter are one contiguous segment, the base projection runs
 * once for the whole batch, and each segment adds its own adapter's term, x_seg·Aᵀ·(s·B)ᵀ, one pair
 * of matmuls per (module, adapter); a base segment ("__base__", as in PEFT) adds nothing. Adapters
 * in one batch may differ in rank, alpha, rsLoRA and targets. Adapters whose forward is not an
 * additive term on each projection's output for its own rows (DoRA, VeRA, AdaLoRA, trained biases)
 * are refused by name: they are served in batches of their own.
 */
public final class MixedDelta implements LinearDelta {
  /** Rows [start, end) of the batch and the adapter term they take (empty: the base). */
  public record Segment(int start, int end, Optional<LinearDelta> delta) {}

  private final List<Segment> segments;

  public MixedDelta(List<Segment> segments) {
    this.segments = List.copyOf(segments);
  }

  /**
   * Binds {@code adapters} in {@code scope} and maps {@code rowAdapter} (the adapter index of each
   * row, −1 for the base; rows of one adapter must be contiguous) to segments.
   */
  public static ForwardContext bind(NDManager scope, List<AdapterFormat.Loaded> adapters, int[] rowAdapter) {
    List<Optional<LinearDelta>> bound = bindEach(scope, adapters).stream().map(Optional::of).toList();
    List<Segment> segments = new ArrayList<>();
    int start = 0;
    java.util.Set<Integer> seen = new java.util.HashSet<>();
    for (int r = 1; r <= rowAdapter.length; r++) {
      if (r == rowAdapter.length || rowAdapter[r] != rowAdapter[start]) {
        int k = rowAdapter[start];
        if (!seen.add(k)) {
          throw new IllegalArgumentException("the rows of adapter " + k + " are not contiguous (row " + start + "); order the batch by adapter");
        }
        segments.add(new Segment(start, r, k < 0 ? Optional.empty() : bound.get(k)));
        start = r;
      }
    }
    return new ForwardContext(scope, Map.of(), new MixedDelta(segments));
  }

  /** Each adapter's term, bound in {@code scope}; an adapter that cannot join a mixed batch is refused ({@link #mixable}). */
  public static List<LinearDelta> bindEach(NDManager scope, List<AdapterFormat.Loaded> adapters) {
    List<LinearDelta> bound = new ArrayList<>();
    for (AdapterFormat.Loaded a : adapters) {
      mixable(a.model());
      bound.add(a.model().bind(scope, a.values(), false, Dropout.OFF).context().delta());
    }
    return bound;
  }

  /** Refuses an adapter that cannot join a mixed batch, naming why. */
  public static void mixable(LoraModel m) {
    unmixable(m).ifPresent(why -> {
      throw new IllegalArgumentException(why);
    });
  }

  /** Why {@code m} cannot join a mixed batch (its forward is not an additive term per row); empty when it can. */
  public static Optional<String> unmixable(LoraModel m) {
    LoraConfig c = m.config();
    String kind = c.method().notMixable().orElse(m.biases().isEmpty() ? "" : "trained-bias");
    return kind.isEmpty() ? Optional.empty() : Optional.of("a " + kind + " adapter cannot join a batch of mixed adapters (its forward is not an "
        + "additive term per row); run it in a batch of its own");
  }

  @Override
  public NDArray addTo(LinearSpec module, NDArray x, NDArray y) {
    if (segments.size() == 1) {
      return segments.get(0).delta().map(d -> d.addTo(module, x, y)).orElse(y);
    }
    NDList parts = new NDList();
    boolean touched = false;
    for (Segment s : segments) {
      NDIndex rows = new NDIndex("{}:{}", s.start(), s.end());
      NDArray ys = y.get(rows);
      NDArray out = s.delta().isPresent() ? s.delta().get().addTo(module, x.get(rows), ys) : ys;
      touched |= out != ys;
      parts.add(out);
    }
    return touched ? NDArrays.concat(parts, 0) : y;
  }
}
