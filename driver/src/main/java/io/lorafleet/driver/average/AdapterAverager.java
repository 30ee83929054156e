package io.lorafleet.driver.average;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.worker.flat.FlatLayout;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.lora.LoraTarget;
import io.lorafleet.worker.model.BaseModel;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;

/**
 * Combines adapters of one base: checkpoints of a run (averaging) or adapters of different tasks
 * (weighted sums). With weights w_i and scalings s_i, the target update is ΔW = Σ w_i·s_i·B_i·A_i.
 *
 * <ul>
 *   <li>{@code factor}: A = Σ w_i A_i, B = Σ w_i B_i. Keeps rank r; equals ΔW only when the factors
 *       agree (e.g. checkpoints that have converged), since Σ w_i B_i · Σ w_j A_j has cross terms.
 *   <li>{@code cat}: A = [A_1; …; A_n], B = [w_1 s_1 B_1, …, w_n s_n B_n] with scaling 1: exactly ΔW,
 *       at rank Σ r_i.
 *   <li>{@code svd}: ΔW truncated to rank k by a truncated SVD of the cat factors (Eckart-Young),
 *       B = U·√Σ, A = √Σ·Vᵀ, scaling 1; the relative Frobenius error is reported.
 * </ul>
 */
public final class AdapterAverager {
  private static final ObjectMapper JSON = new ObjectMapper();

  private AdapterAverager() {}

  /** An adapter and where it came from (for messages and provenance). */
  public record Source(String name, AdapterFormat.Loaded adapter) {}

  /** The combined adapter, its provenance and, for svd, the relative approximation error. */
  public record Result(LoraModel model, float[] values, Map<String, String> metadata, double relativeError) {}

  /** Weights proportional to decay^(n-1-i): the newest checkpoint weighs most (an EMA over checkpoints). */
  public static double[] emaWeights(int n, double decay) {
    if (!(decay > 0 && decay < 1)) {
      throw new IllegalArgumentException("--ema decay must be in (0, 1) but found " + decay);
    }
    double[] w = new double[n];
    for (int i = 0; i < n; i++) {
      w[i] = Math.pow(decay, n - 1 - i);
    }
    return w;
  }

  /**
   * Settings of PEFT's pruning combinations: the fraction of entries kept, the TIES sign election
   * (total or frequency) and DARE's seed. {@code density} NaN means not given.
   */
  public record Merge(double density, String majoritySignMethod, long seed) {
    public static final Merge NONE = new Merge(Double.NaN, "total", 0);
  }

  /** The modes: averaging and exact combination, and PEFT's add_weighted_adapter combination types, factor-wise and on dense updates (_svd). */
  public static final List<String> MODES = List.of("factor", "cat", "svd", "ties", "dare_linear", "dare_ties", "magnitude_prune", "ties_svd",
      "dare_linear_svd", "dare_ties_svd", "magnitude_prune_svd");

  public static Result combine(BaseModel base, List<Source> sources, double[] weights, boolean normalize, String mode, int svdRank) {
    return combine(base, sources, weights, normalize, mode, svdRank, Merge.NONE);
  }

  /**
   * As {@link #combine(BaseModel, List, double[], boolean, String, int)}, with PEFT's combination
   * types: {@code ties}, {@code dare_linear}, {@code dare_ties} and {@code magnitude_prune} act on the
   * factors as PEFT's do (equal ranks; A weighted by sign(w·s)·√|w·s|, B by √|w·s|, the result at
   * scaling 1); their {@code _svd} forms act on each adapter's dense update ΔW_i = s_i·B_i·A_i with
   * weight w_i and refactor the result to rank {@code svdRank} (default: the first adapter's r) by an
   * exact truncated SVD, so that rsLoRA and rank or alpha patterns combine correctly.
   */
  public static Result combine(BaseModel base, List<Source> sources, double[] weights, boolean normalize, String mode, int svdRank, Merge merge) {
    if (sources.isEmpty()) {
      throw new IllegalArgumentException("no adapters to combine");
    }
    if (weights.length != sources.size()) {
      throw new IllegalArgumentException(weights.length + " weights given for " + sources.size() + " adapters");
    }
    double total = 0;
    for (double w : weights) {
      if (!Double.isFinite(w) || (normalize && w < 0)) {
        throw new IllegalArgumentException("weights must be finite" + (normalize ? " and >= 0" : "") + " but found " + w);
      }
      total += w;
    }
    double[] w = weights.clone();
    if (normalize) {
      if (total <= 0) {
        throw new IllegalArgumentException("weights must not all be zero");
      }
      for (int i = 0; i < w.length; i++) {
        w[i] /= total;
      }
    }
    for (Source s : sources) {
      var method = s.adapter().model().config().method();
      method.notAveraged().ifPresent(why -> {
        throw new IllegalArgumentException(s.name() + " is a " + method.name() + " adapter: " + why);
      });
    }
    checkCompatible(sources);
    LoraModel first = sources.get(0).adapter().model();
    if (!MODES.contains(mode)) {
      throw new IllegalArgumentException("--mode must be one of " + String.join(", ", MODES) + " but found '" + mode + "'");
    }
    String type = mode.replace("_svd", "");
    if (TaskMerge.TYPES.contains(type) && !type.equals("linear") && !(merge.density() >= 0 && merge.density() <= 1)) {
      throw new IllegalArgumentException("--mode " + mode + " needs --density in [0, 1] (the fraction of entries kept) but found " + merge.density());
    }
    int rank = svdRank > 0 ? svdRank : first.config().r();
    Result r = switch (mode) {
      case "factor" -> factor(sources, w);
      case "cat" -> exact(base, sources, w, -1);
      case "svd" -> exact(base, sources, w, rank);
      default -> mode.endsWith("_svd") ? dense(base, sources, w, type, rank, merge) : factorWise(base, sources, w, type, merge);
    };
    ObjectNode prov = JSON.createObjectNode();
    prov.put("mode", mode);
    prov.put("normalized", normalize);
    var src = prov.putArray("sources");
    for (int i = 0; i < sources.size(); i++) {
      src.addObject().put("adapter", sources.get(i).name()).put("weight", w[i]);
    }
    if (mode.endsWith("svd")) {
      prov.put("rank", r.model().config().r());
      prov.put("relative_error", r.relativeError());
    }
    if (TaskMerge.TYPES.contains(type)) {
      prov.put("density", merge.density()).put("majority_sign_method", merge.majoritySignMethod()).put("seed", merge.seed());
    }
    Map<String, String> meta = new LinkedHashMap<>();
    meta.put("lorafleet.combine", prov.toString());
    return new Result(r.model(), r.values(), meta, r.relativeError());
  }

  /** Refuses adapters of different bases, module sets or bias choices, naming the first difference. */
  static void checkCompatible(List<Source> sources) {
    Source ref = sources.get(0);
    Set<String> refModules = modules(ref);
    for (Source s : sources.subList(1, sources.size())) {
      String b0 = ref.adapter().model().config().baseModelNameOrPath();
      String b1 = s.adapter().model().config().baseModelNameOrPath();
      if (!b0.isEmpty() && !b1.isEmpty() && !b0.equals(b1)) {
        throw new IllegalArgumentException(s.name() + " was made for base '" + b1 + "' but " + ref.name() + " for '" + b0 + "'");
      }
      Set<String> m = modules(s);
      if (!m.equals(refModules)) {
        Set<String> only = m.stream().filter(x -> !refModules.contains(x)).collect(Collectors.toCollection(java.util.TreeSet::new));
        Set<String> missing = refModules.stream().filter(x -> !m.contains(x)).collect(Collectors.toCollection(java.util.TreeSet::new));
        throw new IllegalArgumentException(s.name() + " adapts a different module set than " + ref.name() + ": only in it " + only + ", missing " + missing);
      }
      if (!s.adapter().model().biases().equals(ref.adapter().model().biases())) {
        throw new IllegalArgumentException(s.name() + " trains biases " + s.adapter().model().biases() + " but " + ref.name() + " trains " + ref.adapter().model().biases());
      }
    }
  }

  private static Set<String> modules(Source s) {
    return s.adapter().model().targets().stream().map(t -> t.module().name()).collect(Collectors.toCollection(java.util.TreeSet::new));
  }

  private static Result factor(List<Source> sources, double[] w) {
    LoraModel ref = equalRanks(sources, "factor");
    float[] out = new float[ref.layout().size()];
    for (int k = 0; k < out.length; k++) {
      double acc = 0;
      for (int i = 0; i < sources.size(); i++) {
        acc += w[i] * sources.get(i).adapter().values()[k];
      }
      out[k] = (float) acc;
    }
    return new Result(ref, out, Map.of(), 0);
  }

  /** PEFT's factor-wise combination (_generalized_task_arithmetic_weighted_adapter): A and B merged separately, the result at scaling 1. */
  private static Result factorWise(BaseModel base, List<Source> sources, double[] w, String type, Merge merge) {
    LoraModel ref = equalRanks(sources, type);
    java.util.SplittableRandom rng = new java.util.SplittableRandom(merge.seed());
    Map<String, Integer> ranks = new LinkedHashMap<>();
    List<double[][]> newA = new ArrayList<>();
    List<double[][]> newB = new ArrayList<>();
    for (LoraTarget t : ref.targets()) {
      double[] wa = new double[sources.size()];
      double[] wb = new double[sources.size()];
      List<double[]> as = new ArrayList<>();
      List<double[]> bs = new ArrayList<>();
      for (int i = 0; i < sources.size(); i++) {
        LoraModel m = sources.get(i).adapter().model();
        LoraTarget tg = m.targets().stream().filter(x -> x.module().name().equals(t.module().name())).findFirst().orElseThrow();
        double ws = w[i] * tg.scale();
        wa[i] = Math.signum(ws) * Math.sqrt(Math.abs(ws)); // the sign on one side only, as PEFT
        wb[i] = Math.sqrt(Math.abs(ws));
        as.add(flat(sources.get(i).adapter().values(), m.layout().slot(tg.keyA()).orElseThrow()));
        bs.add(flat(sources.get(i).adapter().values(), m.layout().slot(tg.keyB()).orElseThrow()));
      }
      FlatLayout.Slot sa = ref.layout().slot(t.keyA()).orElseThrow();
      FlatLayout.Slot sb = ref.layout().slot(t.keyB()).orElseThrow();
      newA.add(matrix(TaskMerge.combine(type, as, wa, merge.density(), merge.majoritySignMethod(), rng), sa));
      newB.add(matrix(TaskMerge.combine(type, bs, wb, merge.density(), merge.majoritySignMethod(), rng), sb));
      ranks.put(t.module().name(), (int) sa.shape()[0]);
    }
    LoraModel model = unitScaleModel(base, ref, ranks);
    return new Result(model, values(model, newA, newB, sources, w), Map.of(), 0);
  }

  /** The _svd forms: each module's dense ΔW_i = s_i·B_i·A_i combined elementwise with weights w_i, then truncated to {@code rank} exactly. */
  private static Result dense(BaseModel base, List<Source> sources, double[] w, String type, int rank, Merge merge) {
    LoraModel ref = sources.get(0).adapter().model();
    java.util.SplittableRandom rng = new java.util.SplittableRandom(merge.seed());
    Map<String, Integer> ranks = new LinkedHashMap<>();
    List<double[][]> newA = new ArrayList<>();
    List<double[][]> newB = new ArrayList<>();
    double errSq = 0;
    double totSq = 0;
    for (LoraTarget t : ref.targets()) {
      int out = t.module().out();
      int in = t.module().in();
      List<double[]> deltas = new ArrayList<>();
      for (Source s : sources) {
        LoraModel m = s.adapter().model();
        LoraTarget tg = m.targets().stream().filter(x -> x.module().name().equals(t.module().name())).findFirst().orElseThrow();
        double[][] d = LowRank.multiply(block(s.adapter().values(), m.layout().slot(tg.keyB()).orElseThrow()),
            block(s.adapter().values(), m.layout().slot(tg.keyA()).orElseThrow()));
        double[] f = new double[out * in];
        for (int i = 0; i < out; i++) {
          for (int j = 0; j < in; j++) {
            f[i * in + j] = tg.scale() * d[i][j];
          }
        }
        deltas.add(f);
      }
      double[] merged = TaskMerge.combine(type, deltas, w, merge.density(), merge.majoritySignMethod(), rng);
      double[][] mm = new double[out][in];
      for (int i = 0; i < out; i++) {
        System.arraycopy(merged, i * in, mm[i], 0, in);
      }
      LowRank.Svd svd = LowRank.dense(mm, rank);
      double[][][] ab = truncatedFactors(svd, rank, out);
      newA.add(ab[0]);
      newB.add(ab[1]);
      ranks.put(t.module().name(), rank);
      for (int j = 0; j < svd.spectrum().length; j++) {
        totSq += svd.spectrum()[j] * svd.spectrum()[j];
        errSq += j >= rank ? svd.spectrum()[j] * svd.spectrum()[j] : 0;
      }
    }
    LoraModel model = unitScaleModel(base, ref, ranks);
    return new Result(model, values(model, newA, newB, sources, w), Map.of(), totSq == 0 ? 0 : Math.sqrt(errSq / totSq));
  }

  private static LoraModel equalRanks(List<Source> sources, String mode) {
    LoraModel ref = sources.get(0).adapter().model();
    for (Source s : sources) {
      if (!s.adapter().model().layout().signature().equals(ref.layout().signature())) {
        throw new IllegalArgumentException(mode + " mode needs equal ranks: " + s.name() + " differs from " + sources.get(0).name() + "; use "
            + (mode.equals("factor") ? "cat or svd" : mode + "_svd"));
      }
      for (int i = 0; i < ref.targets().size() && mode.equals("factor"); i++) { // the other modes fold each scaling into its weights
        if (Math.abs(s.adapter().model().targets().get(i).scale() - ref.targets().get(i).scale()) > 1e-12) {
          throw new IllegalArgumentException("factor mode needs equal scalings (lora_alpha/r): " + s.name() + " differs at " + ref.targets().get(i).module().name());
        }
      }
    }
    return ref;
  }

  private static double[] flat(float[] values, FlatLayout.Slot s) {
    double[] out = new double[s.size()];
    for (int i = 0; i < out.length; i++) {
      out[i] = values[s.offset() + i];
    }
    return out;
  }

  private static double[][] matrix(double[] flat, FlatLayout.Slot s) {
    int rows = (int) s.shape()[0];
    int cols = (int) s.shape()[1];
    double[][] m = new double[rows][cols];
    for (int i = 0; i < rows; i++) {
      System.arraycopy(flat, i * cols, m[i], 0, cols);
    }
    return m;
  }

  private static double[][] block(float[] flat, FlatLayout.Slot s) {
    long[] sh = s.shape();
    double[][] m = new double[(int) sh[0]][(int) sh[1]];
    for (int i = 0; i < sh[0]; i++) {
      for (int j = 0; j < sh[1]; j++) {
        m[i][j] = flat[s.offset() + i * (int) sh[1] + j];
      }
    }
    return m;
  }

  /** cat (svdRank < 0) or svd: per module, stack the factors with w_i·s_i folded into B. */
  private static Result exact(BaseModel base, List<Source> sources, double[] w, int svdRank) {
    LoraModel ref = sources.get(0).adapter().model();
    List<double[][]> newA = new ArrayList<>();
    List<double[][]> newB = new ArrayList<>();
    Map<String, Integer> ranks = new LinkedHashMap<>();
    double errSq = 0;
    double totSq = 0;
    for (int t = 0; t < ref.targets().size(); t++) {
      String module = ref.targets().get(t).module().name();
      List<double[]> aRows = new ArrayList<>();
      List<double[][]> bCols = new ArrayList<>();
      for (int i = 0; i < sources.size(); i++) {
        LoraModel m = sources.get(i).adapter().model();
        LoraTarget tg = m.targets().stream().filter(x -> x.module().name().equals(module)).findFirst().orElseThrow();
        float[] v = sources.get(i).adapter().values();
        double[][] a = block(v, m.layout().slot(tg.keyA()).orElseThrow());
        double[][] b = block(v, m.layout().slot(tg.keyB()).orElseThrow());
        double f = w[i] * tg.scale();
        for (double[] row : b) {
          for (int j = 0; j < row.length; j++) {
            row[j] *= f;
          }
        }
        for (double[] row : a) {
          aRows.add(row);
        }
        bCols.add(b);
      }
      double[][] aCat = aRows.toArray(new double[0][]);
      int out = bCols.get(0).length;
      double[][] bCat = new double[out][aCat.length];
      int col = 0;
      for (double[][] b : bCols) {
        for (int i = 0; i < out; i++) {
          System.arraycopy(b[i], 0, bCat[i], col, b[i].length);
        }
        col += b[0].length;
      }
      if (svdRank < 0) {
        newA.add(aCat);
        newB.add(bCat);
        ranks.put(module, aCat.length);
      } else {
        LowRank.Svd svd = LowRank.svd(bCat, aCat, svdRank);
        double[][][] ab = truncatedFactors(svd, svdRank, out);
        newA.add(ab[0]);
        newB.add(ab[1]);
        ranks.put(module, svdRank);
        for (int j = 0; j < svd.spectrum().length; j++) {
          double s2 = svd.spectrum()[j] * svd.spectrum()[j];
          totSq += s2;
          if (j >= svdRank) {
            errSq += s2;
          }
        }
      }
    }
    LoraModel model = unitScaleModel(base, ref, ranks);
    return new Result(model, values(model, newA, newB, sources, w), Map.of(), totSq == 0 ? 0 : Math.sqrt(errSq / totSq));
  }

  /** B = U·√Σ and A = √Σ·Vᵀ at the requested rank (zero rows and columns where ΔW's rank is lower): {A, B}. */
  private static double[][][] truncatedFactors(LowRank.Svd svd, int rank, int out) {
    double[][] a = new double[rank][svd.v().length];
    double[][] b = new double[out][rank];
    for (int j = 0; j < svd.s().length; j++) {
      double root = Math.sqrt(svd.s()[j]);
      for (int i = 0; i < svd.v().length; i++) {
        a[j][i] = root * svd.v()[i][j];
      }
      for (int i = 0; i < out; i++) {
        b[i][j] = root * svd.u()[i][j];
      }
    }
    return new double[][][] {a, b};
  }

  /** An adapter over {@code ref}'s modules at the given ranks, every scaling 1 (lora_alpha = r, no rsLoRA). */
  private static LoraModel unitScaleModel(BaseModel base, LoraModel ref, Map<String, Integer> ranks) {
    LoraConfig c = ref.config();
    int r0 = ranks.isEmpty() ? c.r() : ranks.values().iterator().next(); // empty: a head trained alone
    Map<String, Integer> rankPattern = new LinkedHashMap<>();
    Map<String, Double> alphaPattern = new LinkedHashMap<>();
    ranks.forEach((m, r) -> {
      if (r != r0) {
        String key = m.replace(".", "\\.");
        rankPattern.put(key, r);
        alphaPattern.put(key, (double) r);
      }
    });
    LoraConfig cfg = LoraConfig.of(r0, r0, c.targetModules()).withTargets(c.targetModules(), c.targetRegex()).withLayers(c.layersToTransform())
        .withPatterns(rankPattern, alphaPattern).withBias(c.bias()).withInit(c.initLoraWeights()).withBaseModel(c.baseModelNameOrPath())
        .withModulesToSave(c.modulesToSave());
    return LoraModel.create(base, cfg);
  }

  /** The flat values of {@code model} from its factors, with the sources' biases averaged (linearly) into it. */
  private static float[] values(LoraModel model, List<double[][]> newA, List<double[][]> newB, List<Source> sources, double[] w) {
    float[] values = new float[model.layout().size()];
    for (int t = 0; t < model.targets().size(); t++) {
      LoraTarget tg = model.targets().get(t);
      if (Math.abs(tg.scale() - 1.0) > 1e-12) {
        throw new IllegalStateException("combined adapter must have scaling 1 at " + tg.module().name() + " but has " + tg.scale());
      }
      put(values, model.layout().slot(tg.keyA()).orElseThrow(), newA.get(t));
      put(values, model.layout().slot(tg.keyB()).orElseThrow(), newB.get(t));
    }
    averageBiases(sources, w, model, values);
    return values;
  }

  private static void put(float[] flat, FlatLayout.Slot s, double[][] m) {
    int cols = (int) s.shape()[1];
    for (int i = 0; i < m.length; i++) {
      for (int j = 0; j < cols; j++) {
        flat[s.offset() + i * cols + j] = (float) m[i][j];
      }
    }
  }

  private static void averageBiases(List<Source> sources, double[] w, LoraModel model, float[] values) {
    for (String bias : model.biases()) {
      FlatLayout.Slot dst = model.layout().slot(model.biasKey(bias)).orElseThrow();
      for (int k = 0; k < dst.size(); k++) {
        double acc = 0;
        for (int i = 0; i < sources.size(); i++) {
          LoraModel m = sources.get(i).adapter().model();
          acc += w[i] * sources.get(i).adapter().values()[m.layout().slot(m.biasKey(bias)).orElseThrow().offset() + k];
        }
        values[dst.offset() + k] = (float) acc;
      }
    }
  }
}
