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
