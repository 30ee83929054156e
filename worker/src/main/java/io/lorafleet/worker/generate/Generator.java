package io.lorafleet.worker.generate;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.worker.flat.Trainable;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.MixedDelta;
import io.lorafleet.worker.model.Dropout;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.ForwardContext;
import io.lorafleet.worker.model.KvCache;
import io.lorafleet.worker.model.LinearDelta;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
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

  /**
   * Whether a sequence of {@code promptTokens} plus {@code generated} tokens fills a context of
   * {@code context} positions: generation ends there ("length"), whatever was asked, so no path
   * decodes past the model's positions (OpenAI's rule: prompt plus completion within the context).
   */
  public static boolean atContextEnd(int context, int promptTokens, int generated) {
    return (long) promptTokens + generated >= context;
  }

  private static void checkPrompt(LanguageModel model, int[] prompt) {
    if (prompt.length == 0) {
      throw new IllegalArgumentException("prompt must hold at least one token");
    }
    int context = model.config().maxPositions();
    if (prompt.length >= context) {
      throw new IllegalArgumentException("the prompt has " + prompt.length + " tokens but the model's context is " + context
          + " positions (max_position_embeddings): nothing is left to generate");
    }
  }

  /** Generated ids (without the prompt), stopping after {@code eos} if given, or at the end of the context. */
  public static int[] generate(LanguageModel model, Optional<Trainable> adapter, float[] values, int[] prompt, Sampling s, Optional<Integer> eos) {
    checkPrompt(model, prompt);
    SplittableRandom rng = new SplittableRandom(s.seed());
    List<Integer> out = new ArrayList<>();
    try (NDManager gen = model.manager().newSubManager(); KvCache cache = model.newCache(gen)) {
      ForwardContext ctx = adapter.isPresent() ? adapter.get().bind(gen, values, false, Dropout.OFF).context() : ForwardContext.inference(gen, LinearDelta.NONE);
      int[] next = prompt;
      for (int i = 0; i < s.maxNewTokens(); i++) {
        float[] last;
        try (NDManager tok = gen.newSubManager()) {
          ForwardContext c = new ForwardContext(tok, ctx.overrides(), ctx.delta());
          NDArray logits = model.forward(c, new int[][] {next}, cache); // (1, T, V)
          last = logits.get(new NDIndex("0, -1, :")).toType(DataType.FLOAT32, false).toFloatArray();
        }
        int id = pick(last, s, rng);
        out.add(id);
        if (eos.isPresent() && id == eos.get() || atContextEnd(model.config().maxPositions(), prompt.length, out.size())) {
          break;
        }
        next = new int[] {id};
      }
    }
    return out.stream().mapToInt(Integer::intValue).toArray();
  }

  /** As {@link #generate(LanguageModel, Optional, float[], int[], Sampling, Optional)} with a loaded adapter, or the base when empty. */
  public static int[] generate(LanguageModel model, Optional<AdapterFormat.Loaded> adapter, int[] prompt, Sampling s, Optional<Integer> eos) {
    return generate(model, adapter.map(a -> (Trainable) a.model()), adapter.map(AdapterFormat.Loaded::values).orElse(new float[0]), prompt, s, eos);
  }

  /**
   * Greedy generations for many prompts at once, as {@link #generate} would give each alone (a
   * {@link DecodeBatch}: left-padded rows, each with its own positions). Row b stops after
   * {@code maxNew[b]} tokens, after its stop token {@code stop[b]} (negative: none) or at the end of
   * the context, and leaves the batch then.
   */
  public static int[][] greedyBatch(LanguageModel model, Optional<Trainable> adapter, float[] values, int[][] prompts, int[] maxNew, int[] stop) {
    try (NDManager gen = model.manager().newSubManager()) {
      ForwardContext ctx = adapter.isPresent() ? adapter.get().bind(gen, values, false, Dropout.OFF).context() : ForwardContext.inference(gen, LinearDelta.NONE);
      List<DecodeBatch.Join> joins = new ArrayList<>();
      for (int r = 0; r < prompts.length; r++) {
        joins.add(new DecodeBatch.Join(r, prompts[r], 0, Optional.of(ctx.delta())));
      }
      return greedy(model, ctx.overrides(), joins, maxNew, stop);
    }
  }

  /**
   * As {@link #greedyBatch(LanguageModel, Optional, float[], int[][], int[], int[])} with row b under
   * adapter {@code rowAdapter[b]} of {@code adapters} (−1: the base), in one batch of mixed adapters
   * ({@link MixedDelta}).
   */
  public static int[][] greedyMixed(LanguageModel model, List<AdapterFormat.Loaded> adapters, int[] rowAdapter, int[][] prompts, int[] maxNew, int[] stop) {
    try (NDManager gen = model.manager().newSubManager()) {
      List<LinearDelta> bound = MixedDelta.bindEach(gen, adapters);
      List<DecodeBatch.Join> joins = new ArrayList<>();
      for (int r = 0; r < prompts.length; r++) {
        int k = rowAdapter[r];
        joins.add(new DecodeBatch.Join(r, prompts[r], k, k < 0 ? Optional.empty() : Optional.of(bound.get(k))));
      }
      return greedy(model, Map.of(), joins, maxNew, stop);
    }
  }

  private static int[][] greedy(LanguageModel model, Map<String, NDArray> overrides, List<DecodeBatch.Join> joins, int[] maxNew, int[] stop) {
    List<List<Integer>> out = new ArrayList<>();
    joins.forEach(j -> {
      checkPrompt(model, j.prompt());
      out.add(new ArrayList<>());
    });
    try (DecodeBatch batch = new DecodeBatch(model, overrides)) {
      Map<Long, float[]> logits = batch.join(joins.stream().filter(j -> maxNew[(int) j.id()] > 0).toList());
      while (!logits.isEmpty()) {
        Map<Long, Integer> next = new HashMap<>();
        List<Long> done = new ArrayList<>();
        logits.forEach((id, l) -> {
          int r = (int) (long) id;
          int tok = argmax(l);
          out.get(r).add(tok);
          if (out.get(r).size() >= maxNew[r] || tok == stop[r]
              || atContextEnd(model.config().maxPositions(), joins.get(r).prompt().length, out.get(r).size())) {
            done.add(id);
          } else {
            next.put(id, tok);
          }
        });
        batch.leave(done);
        logits = batch.step(next);
      }
    }
    return out.stream().map(l -> l.stream().mapToInt(Integer::intValue).toArray()).toArray(int[][]::new);
  }

  /** The next token from a position's logits: the argmax when greedy, else a draw from the top-p nucleus (one draw of {@code rng}). */
  public static int pick(float[] logits, Sampling s, SplittableRandom rng) {
    return s.temperature() == 0 ? argmax(logits) : sample(logits, s, rng);
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
