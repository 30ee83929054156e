package io.lorafleet.driver.optim;

import io.lorafleet.worker.flat.FlatLayout;
import io.lorafleet.worker.lora.AdaloraMethod;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.lora.LoraTarget;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * AdaLoRA's rank allocation (Zhang et al. 2023), on the driver, which holds the adapter and sees the
 * all-reduced gradient: PEFT's RankAllocator and AdaLoraModel.update_and_allocate
 * (peft/tuners/adalora/layer.py, model.py), and the orthogonal regularization of AdaLoraModel.forward.
 *
 * <p>After each optimizer step t: while t &lt; T − t_final, the importance I = |p·∇p| of every value
 * of A, E and B is smoothed into Ī = β1·Ī + (1−β1)·I and Ū = β2·Ū + (1−β2)·|I − Ī|; the budget
 * follows the cubic schedule (init budget until t_init, then falling to target_r per module by
 * T − t_final); every deltaT steps each triplet k of a module scores s(E_k) + mean_j s(A_kj) +
 * mean_o s(B_ok) with s = Ī·Ū, and E_k is zeroed where the score is at most the (init − budget)-th
 * smallest. At t = T − t_final the allocation is forced at the target budget and fixed, and the
 * importance restarts; after that the fixed mask is applied each step.
 */
public final class RankAllocator {
  /** One module's factors in the flat buffer. */
  private record Triplet(String module, FlatLayout.Slot a, FlatLayout.Slot e, FlatLayout.Slot b, int rank, int in, int out) {}

  private final AdaloraMethod cfg;
  private final LoraModel lora;
  private final List<Triplet> triplets = new ArrayList<>();
  private final int initBudget;
  private final int targetBudget;
  private float[] expIpt;
  private float[] expUnc;
  private Map<String, List<Boolean>> pattern = new LinkedHashMap<>();

  public RankAllocator(LoraModel lora) {
    if (!(lora.config().method() instanceof AdaloraMethod a)) {
      throw new IllegalArgumentException("a rank allocator needs an AdaLoRA adapter, found peft_type " + lora.config().peftType());
    }
    this.cfg = a;
    this.lora = lora;
    FlatLayout l = lora.layout();
    int init = 0;
    for (LoraTarget t : lora.targets()) {
      triplets.add(new Triplet(t.module().name(), l.slot(t.keyAdaA()).orElseThrow(), l.slot(t.keyAdaE()).orElseThrow(), l.slot(t.keyAdaB()).orElseThrow(),
          t.rank(), t.module().in(), t.module().out()));
      init += t.rank();
    }
    this.initBudget = init;
    this.targetBudget = cfg.targetR() * triplets.size();
    this.expIpt = new float[l.size()];
    this.expUnc = new float[l.size()];
  }

  /** The driver's allocator for {@code lora}: AdaLoRA's; none for any other method. */
  public static java.util.Optional<RankAllocator> of(LoraModel lora) {
    return lora.config().method() instanceof AdaloraMethod ? java.util.Optional.of(new RankAllocator(lora)) : java.util.Optional.empty();
  }

  /** The adapter as the run saves it: cut down to the kept ranks once ranks were allocated, as PEFT saves it. */
  public LoraModel.Values finalAdapter(float[] params) {
    return pattern.isEmpty() ? new LoraModel.Values(lora, params) : cfg.truncate(lora, params, pattern);
  }

  /** The budget at step t and whether to mask then (PEFT's budget_schedule). */
  public record Budget(int budget, boolean mask) {}

  public Budget schedule(int step) {
    if (step <= cfg.tinit()) {
      return new Budget(initBudget, false);
    }
    if (step > cfg.totalStep() - cfg.tfinal()) {
      return new Budget(targetBudget, true);
    }
    double mul = 1 - (double) (step - cfg.tinit()) / (cfg.totalStep() - cfg.tfinal() - cfg.tinit());
    return new Budget((int) ((initBudget - targetBudget) * (mul * mul * mul) + targetBudget), step % cfg.deltaT() == 0);
  }

  /**
   * Call after the optimizer step of step {@code step}, with the gradient that step used,
   * {@code sum[i]·scale}; masks E in {@code params} in place when the schedule says so.
   */
  public void afterStep(float[] params, float[] sum, float scale, int step) {
    int end = cfg.totalStep() - cfg.tfinal();
    if (step < end) {
      update(params, sum, scale);
      Budget b = schedule(step);
      if (b.mask()) {
        pattern = maskToBudget(params, b.budget());
      }
    } else if (step == end) {
      pattern = maskToBudget(params, schedule(step).budget()); // forced: the final allocation
      Arrays.fill(expIpt, 0);
      Arrays.fill(expUnc, 0);
    } else {
      applyPattern(params);
    }
  }

  private void update(float[] p, float[] sum, float scale) {
    float b1 = (float) cfg.beta1();
    float b2 = (float) cfg.beta2();
    for (Triplet t : triplets) {
      for (FlatLayout.Slot s : List.of(t.a(), t.e(), t.b())) {
        for (int i = s.offset(); i < s.offset() + s.size(); i++) {
          float ipt = Math.abs(p[i] * (sum[i] * scale));
          expIpt[i] = b1 * expIpt[i] + (1 - b1) * ipt;
          expUnc[i] = b2 * expUnc[i] + (1 - b2) * Math.abs(ipt - expIpt[i]);
        }
      }
    }
  }

  /** Each triplet's score: s(E_k) + mean over A's row k + mean over B's column k, with s = Ī·Ū. */
  double[][] scores() {
    double[][] out = new double[triplets.size()][];
    for (int m = 0; m < triplets.size(); m++) {
      Triplet t = triplets.get(m);
      double[] s = new double[t.rank()];
      for (int k = 0; k < t.rank(); k++) {
        double a = 0;
        for (int j = 0; j < t.in(); j++) {
          int i = t.a().offset() + k * t.in() + j;
          a += (double) expIpt[i] * expUnc[i];
        }
        double b = 0;
        for (int o = 0; o < t.out(); o++) {
          int i = t.b().offset() + o * t.rank() + k;
          b += (double) expIpt[i] * expUnc[i];
        }
        int e = t.e().offset() + k;
        s[k] = (double) expIpt[e] * expUnc[e] + a / t.in() + b / t.out();
      }
      out[m] = s;
    }
    return out;
  }

  /** Zeroes E where a triplet scores at most the (init − budget)-th smallest score; returns the kept ranks. */
  private Map<String, List<Boolean>> maskToBudget(float[] p, int budget) {
    double[][] s = scores();
    int k = initBudget - budget;
    double threshold = Double.NEGATIVE_INFINITY; // k = 0: nothing to cut (torch.kthvalue would refuse k = 0)
    if (k > 0) {
      double[] all = Arrays.stream(s).flatMapToDouble(Arrays::stream).sorted().toArray();
      threshold = all[k - 1];
    }
    Map<String, List<Boolean>> kept = new LinkedHashMap<>();
    for (int m = 0; m < triplets.size(); m++) {
      Triplet t = triplets.get(m);
      List<Boolean> keep = new ArrayList<>();
      for (int r = 0; r < t.rank(); r++) {
        boolean cut = s[m][r] <= threshold;
        keep.add(!cut);
        if (cut) {
          p[t.e().offset() + r] = 0f;
        }
      }
      kept.put(t.module() + ".lora_E", keep);
    }
    return kept;
  }

  private void applyPattern(float[] p) {
    for (Triplet t : triplets) {
      List<Boolean> keep = pattern.get(t.module() + ".lora_E");
      for (int r = 0; keep != null && r < t.rank(); r++) {
        if (!keep.get(r)) {
          p[t.e().offset() + r] = 0f;
        }
      }
    }
  }

  /** The current allocation (empty before the first), per "&lt;module&gt;.lora_E". */
  public Map<String, List<Boolean>> pattern() {
    return Map.copyOf(pattern);
  }

  public float[] sensitivity() {
    return expIpt;
  }

  public float[] uncertainty() {
    return expUnc;
  }

  /** The checkpoint's optimizer tensors for this allocator. */
  public Map<String, float[]> checkpointTensors() {
    return Map.of("adalora.exp_avg_ipt", expIpt.clone(), "adalora.exp_avg_unc", expUnc.clone());
  }

  /** The checkpoint's trainer_state fields for this allocator: the current allocation. */
  public com.fasterxml.jackson.databind.node.ObjectNode checkpointState() {
    var json = new com.fasterxml.jackson.databind.ObjectMapper();
    var n = json.createObjectNode();
    var rp = n.putObject("adalora_rank_pattern");
    pattern.forEach((k, v) -> {
      var l = rp.putArray(k);
      v.forEach(l::add);
    });
    return n;
  }

  /** Restores what {@link #checkpointTensors} and {@link #checkpointState} saved. */
  public void restore(Map<String, float[]> tensors, com.fasterxml.jackson.databind.JsonNode state) {
    float[] ipt = tensors.get("adalora.exp_avg_ipt");
    float[] unc = tensors.get("adalora.exp_avg_unc");
    if (ipt == null || unc == null) {
      throw new IllegalArgumentException("the checkpoint holds no AdaLoRA importance state (adalora.exp_avg_ipt, adalora.exp_avg_unc)");
    }
    Map<String, List<Boolean>> kept = new LinkedHashMap<>();
    state.path("adalora_rank_pattern").fields().forEachRemaining(e -> {
      List<Boolean> b = new ArrayList<>();
      e.getValue().forEach(x -> b.add(x.asBoolean()));
      kept.put(e.getKey(), b);
    });
    restore(ipt, unc, kept);
  }

  /** Restores the smoothed importance and the allocation from a checkpoint. */
  public void restore(float[] ipt, float[] unc, Map<String, List<Boolean>> kept) {
    if (ipt.length != expIpt.length || unc.length != expUnc.length) {
      throw new IllegalArgumentException("AdaLoRA importance state has " + ipt.length + " values but the adapter has " + expIpt.length);
    }
    expIpt = ipt.clone();
    expUnc = unc.clone();
    pattern = new LinkedHashMap<>(kept);
  }

  /**
   * Adds the gradient of AdaLoRA's orthogonal regularization, w·mean over every A and B of
   * ‖A·Aᵀ − I‖_F and ‖Bᵀ·B − I‖_F (not squared), to {@code grad} divided by {@code scale} (so that
   * grad·scale gains it), in float64; returns the regularization's value. The gradient of ‖M‖_F
   * with M = A·Aᵀ − I is 2·M·A/‖M‖_F (and 2·B·M/‖M‖_F for B); 0 where M = 0, as torch's norm gives.
   */
  public double addOrthogonalRegularization(float[] params, float[] grad, float scale) {
    if (cfg.orthRegWeight() == 0 || triplets.isEmpty()) {
      return 0;
    }
    int count = 2 * triplets.size();
    double w = cfg.orthRegWeight() / count;
    double total = 0;
    for (Triplet t : triplets) {
      total += orth(params, grad, scale, w, t.a().offset(), t.rank(), t.in(), true);
      total += orth(params, grad, scale, w, t.b().offset(), t.out(), t.rank(), false);
    }
    return cfg.orthRegWeight() * total / count;
  }

  /** For P (rows × cols) at off: rows-side M = P·Pᵀ − I (A) or cols-side M = Pᵀ·P − I (B). */
  private static double orth(float[] p, float[] grad, float scale, double w, int off, int rows, int cols, boolean rowsSide) {
    int n = rowsSide ? rows : cols;
    double[][] m = new double[n][n];
    for (int i = 0; i < n; i++) {
      for (int j = 0; j < n; j++) {
        double d = 0;
        if (rowsSide) {
          for (int c = 0; c < cols; c++) {
            d += (double) p[off + i * cols + c] * p[off + j * cols + c];
          }
        } else {
          for (int r = 0; r < rows; r++) {
            d += (double) p[off + r * cols + i] * p[off + r * cols + j];
          }
        }
        m[i][j] = d - (i == j ? 1 : 0);
      }
    }
    double norm = 0;
    for (double[] row : m) {
      for (double x : row) {
        norm += x * x;
      }
    }
    norm = Math.sqrt(norm);
    if (norm == 0) {
      return 0;
    }
    double f = 2 * w / norm / scale;
    for (int r = 0; r < rows; r++) {
      for (int c = 0; c < cols; c++) {
        double g = 0;
        if (rowsSide) { // (M·A)[r, c]
          for (int k = 0; k < n; k++) {
            g += m[r][k] * p[off + k * cols + c];
          }
        } else { // (B·M)[r, c]
          for (int k = 0; k < n; k++) {
            g += (double) p[off + r * cols + k] * m[k][c];
          }
        }
        grad[off + r * cols + c] += (float) (f * g);
      }
    }
    return norm;
  }
}
