package io.lorafleet.worker.generate;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.MixedDelta;
import io.lorafleet.worker.model.CausalLM;
import io.lorafleet.worker.model.ForwardContext;
import io.lorafleet.worker.model.KvCache;
import io.lorafleet.worker.model.LinearDelta;
import io.lorafleet.worker.train.Trainable;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Optional;
import java.util.SplittableRandom;
import java.util.stream.IntStream;

/**
 * Autoregressive decoding with a KV cache: one forward over the prompt, then one position per
 * token. Works on the bare base, on a base with an unmerged adapter (any {@link Trainable} with its
 * values), or on a merged base; switching adapters never reloads the base.
 */
public final class Generator {
  private Generator() {}

  /** Generated ids (without the prompt), stopping after {@code eos} if given. */
  public static int[] generate(CausalLM model, Optional<Trainable> adapter, float[] values, int[] prompt, Sampling s, Optional<Integer> eos) {
    if (prompt.length == 0) {
      throw new IllegalArgumentException("prompt must hold at least one token");
    }
    SplittableRandom rng = new SplittableRandom(s.seed());
    List<Integer> out = new ArrayList<>();
    try (NDManager gen = model.manager().newSubManager(); KvCache cache = model.newCache(gen)) {
      ForwardContext ctx = adapter.isPresent() ? adapter.get().bind(gen, values, false, -1).context() : ForwardContext.inference(gen, LinearDelta.NONE);
      int[] next = prompt;
      for (int i = 0; i < s.maxNewTokens(); i++) {
        float[] last;
        try (NDManager tok = gen.newSubManager()) {
          ForwardContext c = new ForwardContext(tok, ctx.overrides(), ctx.delta());
          NDArray logits = model.forward(c, new int[][] {next}, cache); // (1, T, V)
          last = logits.get(new NDIndex("0, -1, :")).toType(DataType.FLOAT32, false).toFloatArray();
        }
        int id = s.temperature() == 0 ? argmax(last) : sample(last, s, rng);
        out.add(id);
        if (eos.isPresent() && id == eos.get()) {
          break;
        }
        next = new int[] {id};
      }
    }
    return out.stream().mapToInt(Integer::intValue).toArray();
  }

  /** As {@link #generate(CausalLM, Optional, float[], int[], Sampling, Optional)} with a loaded adapter, or the base when empty. */
  public static int[] generate(CausalLM model, Optional<AdapterFormat.Loaded> adapter, int[] prompt, Sampling s, Optional<Integer> eos) {
    return generate(model, adapter.map(a -> (Trainable) a.model()), adapter.map(AdapterFormat.Loaded::values).orElse(new float[0]), prompt, s, eos);
  }

  /**
   * Greedy generations for many prompts at once, as {@link #generate} would give each alone: prompts
   * are left-padded to one length, each row keeps its own positions, and the padding sits in a
   * segment of its own that no real token attends to. Row b stops after {@code maxNew[b]} tokens or
   * after its stop token {@code stop[b]} (negative: none); the batch runs until every row has stopped.
   */
  public static int[][] greedyBatch(CausalLM model, Optional<Trainable> adapter, float[] values, int[][] prompts, int[] maxNew, int[] stop) {
    return greedyBatch(model, gen -> adapter.isPresent() ? adapter.get().bind(gen, values, false, -1).context()
        : ForwardContext.inference(gen, LinearDelta.NONE), prompts, maxNew, stop);
  }

  /**
   * As {@link #greedyBatch(CausalLM, Optional, float[], int[][], int[], int[])} with row b under
   * adapter {@code rowAdapter[b]} of {@code adapters} (−1: the base), in one batch: the rows are
   * ordered by adapter for the segments of {@link MixedDelta}, and the results returned in the
   * caller's order.
   */
  public static int[][] greedyMixed(CausalLM model, List<AdapterFormat.Loaded> adapters, int[] rowAdapter, int[][] prompts, int[] maxNew, int[] stop) {
    Integer[] order = IntStream.range(0, prompts.length).boxed().toArray(Integer[]::new);
    Arrays.sort(order, Comparator.comparingInt(r -> rowAdapter[r])); // stable: rows of one adapter keep their order
    int[][] p = new int[prompts.length][];
    int[] mn = new int[prompts.length];
    int[] st = new int[prompts.length];
    int[] ra = new int[prompts.length];
    for (int i = 0; i < order.length; i++) {
      p[i] = prompts[order[i]];
      mn[i] = maxNew[order[i]];
      st[i] = stop[order[i]];
      ra[i] = rowAdapter[order[i]];
    }
    int[][] sorted = greedyBatch(model, gen -> MixedDelta.bind(gen, adapters, ra), p, mn, st);
    int[][] out = new int[prompts.length][];
    for (int i = 0; i < order.length; i++) {
      out[order[i]] = sorted[i];
    }
    return out;
  }

  private static int[][] greedyBatch(CausalLM model, java.util.function.Function<NDManager, ForwardContext> bind, int[][] prompts, int[] maxNew,
      int[] stop) {
    int b = prompts.length;
    int len = 0;
    for (int[] p : prompts) {
      if (p.length == 0) {
        throw new IllegalArgumentException("prompt must hold at least one token");
      }
      len = Math.max(len, p.length);
    }
    int[] pad = new int[b];
    int[][] step = new int[b][len];
    int[][] stepPos = new int[b][len];
    for (int r = 0; r < b; r++) {
      pad[r] = len - prompts[r].length;
      System.arraycopy(prompts[r], 0, step[r], pad[r], prompts[r].length);
      for (int j = pad[r]; j < len; j++) {
        stepPos[r][j] = j - pad[r];
      }
    }
    List<List<Integer>> out = new ArrayList<>();
    boolean[] done = new boolean[b];
    int steps = 0;
    for (int r = 0; r < b; r++) {
      out.add(new ArrayList<>());
      steps = Math.max(steps, maxNew[r]);
      done[r] = maxNew[r] <= 0;
    }
    try (NDManager gen = model.manager().newSubManager(); KvCache cache = model.newCache(gen)) {
      ForwardContext ctx = bind.apply(gen);
      for (int i = 0; i < steps; i++) {
        int keys = cache.length() + step[0].length;
        int[][] segments = new int[b][keys]; // padding 0, everything after it 1
        for (int r = 0; r < b; r++) {
          Arrays.fill(segments[r], pad[r], keys, 1);
        }
        float[] flat;
        try (NDManager tok = gen.newSubManager()) {
          ForwardContext c = new ForwardContext(tok, ctx.overrides(), ctx.delta());
          NDArray logits = model.forward(c, step, stepPos, segments, cache); // (B, T, V)
          flat = logits.get(new NDIndex(":, -1, :")).toType(DataType.FLOAT32, false).toFloatArray(); // (B, V)
        }
        int v = flat.length / b;
        boolean all = true;
        for (int r = 0; r < b; r++) {
          int id = argmax(Arrays.copyOfRange(flat, r * v, (r + 1) * v));
          if (!done[r]) {
            out.get(r).add(id);
            done[r] = out.get(r).size() >= maxNew[r] || id == stop[r];
          }
          all &= done[r];
          stepPos[r] = new int[] {len - pad[r] + i};
          step[r] = new int[] {id};
        }
        if (all) {
          break;
        }
      }
    }
    int[][] res = new int[b][];
    for (int r = 0; r < b; r++) {
      res[r] = out.get(r).stream().mapToInt(Integer::intValue).toArray();
    }
    return res;
  }

  static int argmax(float[] v) {
    int best = 0;
    for (int i = 1; i < v.length; i++) {
      if (v[i] > v[best]) {
        best = i;
      }
    }
    return best;
  }

  static int sample(float[] logits, Sampling s, SplittableRandom rng) {
    double max = Double.NEGATIVE_INFINITY;
    for (float l : logits) {
      max = Math.max(max, l);
    }
    double[] p = new double[logits.length];
    double z = 0;
    for (int i = 0; i < p.length; i++) {
      p[i] = Math.exp((logits[i] - max) / s.temperature());
      z += p[i];
    }
    Integer[] order = IntStream.range(0, p.length).boxed().toArray(Integer[]::new);
    final double[] probs = p;
    Arrays.sort(order, Comparator.comparingDouble(i -> -probs[i]));
    double mass = 0;
    int keep = 0;
    while (keep < order.length && mass < s.topP() * z) {
      mass += p[order[keep++]];
    }
    double u = rng.nextDouble() * mass;
    for (int k = 0; k < keep; k++) {
      u -= p[order[k]];
      if (u <= 0) {
        return order[k];
      }
    }
    return order[keep - 1];
  }
}
