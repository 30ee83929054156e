package io.lorafleet.worker.generate;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
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

  /**
   * Greedy generations for many prompts at once, as {@link #generate} would give each alone: prompts
   * are left-padded to one length, each row keeps its own positions, and the padding sits in a
   * segment of its own that no real token attends to. Row b stops after {@code maxNew[b]} tokens or
   * after {@code eos}; the batch runs until every row has stopped.
   */
  public static int[][] greedyBatch(CausalLM model, Optional<Trainable> adapter, float[] values, int[][] prompts, int[] maxNew, Optional<Integer> eos) {
    int b = prompts.length;
    int len = 0;
    for (int[] p : prompts) {
      if (p.length == 0) {
        throw new IllegalArgumentException("prompt must hold at least one token");
      }
      len = Math.max(len, p.length);
    }
    int[][] ids = new int[b][len];
    int[][] pos = new int[b][len];
    List<int[]> segs = new ArrayList<>();
    int[] next = new int[b]; // the position each row continues at
    for (int r = 0; r < b; r++) {
      int pad = len - prompts[r].length;
      System.arraycopy(prompts[r], 0, ids[r], pad, prompts[r].length);
      int[] seg = new int[len];
      for (int j = pad; j < len; j++) {
        pos[r][j] = j - pad;
        seg[j] = 1;
      }
      segs.add(seg);
      next[r] = prompts[r].length;
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
      ForwardContext ctx = adapter.isPresent() ? adapter.get().bind(gen, values, false, -1).context() : ForwardContext.inference(gen, LinearDelta.NONE);
      int[][] step = ids;
      int[][] stepPos = pos;
      for (int i = 0; i < steps; i++) {
        int[][] segments = new int[b][];
        for (int r = 0; r < b; r++) {
          segments[r] = segs.get(r);
        }
        float[][] last = new float[b][];
        try (NDManager tok = gen.newSubManager()) {
          ForwardContext c = new ForwardContext(tok, ctx.overrides(), ctx.delta());
          NDArray logits = model.forward(c, step, stepPos, segments, cache); // (B, T, V)
          NDArray lastRow = logits.get(new NDIndex(":, -1, :")).toType(DataType.FLOAT32, false); // (B, V)
          float[] flat = lastRow.toFloatArray();
          int v = flat.length / b;
          for (int r = 0; r < b; r++) {
            last[r] = Arrays.copyOfRange(flat, r * v, (r + 1) * v);
          }
        }
        int[][] feed = new int[b][1];
        int[][] feedPos = new int[b][1];
        boolean all = true;
        for (int r = 0; r < b; r++) {
          int id = argmax(last[r]);
          if (!done[r]) {
            out.get(r).add(id);
            done[r] = out.get(r).size() >= maxNew[r] || (eos.isPresent() && id == eos.get());
          }
          all &= done[r];
          feed[r][0] = id;
          feedPos[r][0] = next[r]++;
          int[] seg = Arrays.copyOf(segs.get(r), segs.get(r).length + 1);
          seg[seg.length - 1] = 1;
          segs.set(r, seg);
        }
        if (all) {
          break;
        }
        step = feed;
        stepPos = feedPos;
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
