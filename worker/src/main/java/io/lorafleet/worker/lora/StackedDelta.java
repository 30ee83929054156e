package io.lorafleet.worker.lora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.LinearDelta;
import io.lorafleet.worker.model.Ops;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Many plain LoRA adapters in one batch as one wide adapter: per module, the A factors of every
 * adapter that targets it are concatenated along the rank, (R, in) with R = Σ r_k, and their scaled
 * B factors likewise, (out, R); row b keeps only its own adapter's columns of x·Aᵀ through a 0/1 mask,
 * so y_b + (m_b ⊙ x_b·Aᵀ)·(sB)ᵀ = y_b + s_k·x_b·A_kᵀ·B_kᵀ exactly (the other terms are exact zeros).
 *
 * <p>Three ops a module whatever the number of adapters, where per-adapter segments
 * ({@link MixedDelta}) take about six per adapter: in decode steps, one token per row, the ops are
 * what costs, and this form is several times faster. It computes Σ r_k instead of r_k columns per
 * row, so prefill, where the matmuls cost, keeps the segments.
 */
public final class StackedDelta implements AutoCloseable {
  /**
   * The column range of each adapter slot in a module's stack (start −1: the slot does not target
   * it). Modules with equal columns (the same adapters, of the same ranks) share a step's mask.
   */
  private record Columns(List<Integer> start, List<Integer> rank, int width) {}

  /** One module's stacked factors and their columns. */
  private record Stack(NDArray aT, NDArray sb, Columns columns) {}

  private final NDManager manager;
  private final int slots;
  private final Map<String, Stack> modules;

  private StackedDelta(NDManager manager, int slots, Map<String, Stack> modules) {
    this.manager = manager;
    this.slots = slots;
    this.modules = modules;
  }

  /** Whether {@code delta} (a bound adapter term) can be stacked: every module's term LoRA's plain one (not DoRA's or VeRA's). */
  public static boolean stackable(LinearDelta delta) {
    return delta instanceof LoraDelta d && d.factors().values().stream().allMatch(f -> f.term() == LoraDelta.PLAIN);
  }

  /** Stacks the bound terms of {@code adapters} (slot k is adapters.get(k)) in a scope of its own under {@code parent}. */
  public static StackedDelta of(NDManager parent, List<LinearDelta> adapters) {
    NDManager m = parent.newSubManager();
    Map<String, List<Integer>> byModule = new LinkedHashMap<>();
    for (int k = 0; k < adapters.size(); k++) {
      if (!stackable(adapters.get(k))) {
        m.close();
        throw new IllegalArgumentException("adapter slot " + k + " is not plain LoRA (DoRA, VeRA or another kind of term); it cannot be stacked");
      }
      for (String mod : ((LoraDelta) adapters.get(k)).factors().keySet()) {
        byModule.computeIfAbsent(mod, x -> new ArrayList<>()).add(k);
      }
    }
    Map<String, Stack> modules = new HashMap<>();
    for (Map.Entry<String, List<Integer>> e : byModule.entrySet()) {
      int[] start = new int[adapters.size()];
      int[] rank = new int[adapters.size()];
      java.util.Arrays.fill(start, -1);
      NDArray aT;
      NDArray sb;
      int width = 0;
      try (NDManager tmp = m.newSubManager()) { // the adapters' own arrays stay where they are
        NDList as = new NDList();
        NDList sbs = new NDList();
        for (int k : e.getValue()) {
          LoraDelta.Factors f = ((LoraDelta) adapters.get(k)).factors().get(e.getKey());
          int r = (int) f.a().getShape().get(0);
          start[k] = width;
          rank[k] = r;
          width += r;
          NDArray a = f.a().duplicate(); // (r, in)
          NDArray bk = f.b().duplicate(); // (out, r)
          a.attach(tmp);
          bk.attach(tmp);
          as.add(a);
          sbs.add(bk.mul(Ops.constant(bk, f.scale()))); // s·B as LoraDelta scales it, so the products round alike
        }
        NDArray cat = as.size() == 1 ? as.get(0) : NDArrays.concat(as, 0); // (R, in)
        aT = cat.transpose().duplicate(); // (in, R), contiguous
        sb = (sbs.size() == 1 ? sbs.get(0) : NDArrays.concat(sbs, 1)).duplicate(); // (out, R)
        aT.attach(m);
        sb.attach(m);
      }
      modules.put(e.getKey(), new Stack(aT, sb, new Columns(java.util.Arrays.stream(start).boxed().toList(),
          java.util.Arrays.stream(rank).boxed().toList(), width)));
    }
    return new StackedDelta(m, adapters.size(), modules);
  }

  /**
   * The term for a batch whose row b uses slot {@code rowSlot[b]} (−1: the base, no term), with its
   * masks made in {@code step}.
   */
  public LinearDelta rows(NDManager step, int[] rowSlot) {
    for (int s : rowSlot) {
      if (s < -1 || s >= slots) {
        throw new IllegalArgumentException("row slot " + s + " is outside [-1, " + slots + ")");
      }
    }
    Map<Columns, NDArray> masks = new HashMap<>();
    return (module, x, y) -> {
      Stack st = modules.get(module.name());
      if (st == null) {
        return y;
      }
      NDArray mask = masks.computeIfAbsent(st.columns(), c -> mask(step, c, rowSlot, x));
      NDArray xa = x.matMul(st.aT()).mul(mask); // (B, T, R), each row only its own adapter's columns
      return LanguageModel.addmm(y, xa, st.sb());
    };
  }

  /** (B, 1, R): 1 over the columns of row b's adapter, 0 elsewhere. */
  private static NDArray mask(NDManager step, Columns c, int[] rowSlot, NDArray x) {
    float[] v = new float[rowSlot.length * c.width()];
    for (int b = 0; b < rowSlot.length; b++) {
      int k = rowSlot[b];
      if (k >= 0 && c.start().get(k) >= 0) {
        java.util.Arrays.fill(v, b * c.width() + c.start().get(k), b * c.width() + c.start().get(k) + c.rank().get(k), 1f);
      }
    }
    return step.create(v, new Shape(rowSlot.length, 1, c.width())).toType(x.getDataType(), false);
  }


  @Override
  public void close() {
    manager.close();
  }
}
