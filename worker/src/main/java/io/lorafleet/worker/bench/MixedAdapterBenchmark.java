package io.lorafleet.worker.bench;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.lora.MixedDelta;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.ModelConfig;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.TinyModelSpec;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/**
 * The forward pass (a prefill, no graph) of one batch whose rows use N different adapters, against
 * the same batch with one adapter, and against N separate batches of one adapter each. Each pass
 * binds the adapters it uses (as a server binds a request's adapters). Rounds run
 * the three interleaved; ratios are medians of per-round ratios.
 */
public final class MixedAdapterBenchmark {
  private MixedAdapterBenchmark() {}

  /** {@code adapters} LoRA adapters of rank {@code rank} (all-linear) over a random llama of {@code base}'s shape; {@code load.steps()} measured rounds. */
  public static Map<String, Object> run(StepBenchmark.Base base, StepBenchmark.Load load, int rank, int adapters) {
    int hidden = base.hidden();
    int layers = base.layers();
    int intermediate = base.intermediate();
    int vocab = base.vocab();
    int seqLen = load.seqLen();
    int batch = load.batch();
    int warmup = load.warmup();
    int rounds = load.steps();
    if (batch % adapters != 0) {
      throw new IllegalArgumentException("--batch (" + batch + ") must be a multiple of --adapters (" + adapters + ")");
    }
    TinyModelSpec spec = new TinyModelSpec("llama", layers, hidden, hidden / 64, hidden / 64, intermediate, vocab, Math.max(seqLen, 512), false);
    ModelConfig cfg = ModelConfig.fromJson(spec.configJson(1, 2), "bench");
    Map<String, Object> out = new LinkedHashMap<>();
    out.put("model", "llama H" + hidden + " L" + layers + " FFN" + intermediate + " V" + vocab);
    out.put("batch", batch + "x" + seqLen);
    out.put("adapters", adapters + " x LoRA r" + rank + " all-linear");
    out.put("threads", Runtime.getRuntime().availableProcessors());
    try (LanguageModel m = LanguageModel.fromTensors(cfg, ModelDirectory.randomTensors(cfg, 1), Device.cpu(), DataType.FLOAT32)) {
      List<AdapterFormat.Loaded> a = new ArrayList<>();
      for (int i = 0; i < adapters; i++) {
        LoraModel lora = LoraModel.create(m, LoraConfig.of(rank, 2.0 * rank, List.of("all-linear")));
        float[] v = lora.initialParams(i);
        Random r = new Random(i);
        for (int k = 0; k < v.length; k++) {
          v[k] += (float) (r.nextGaussian() * 0.01);
        }
        a.add(new AdapterFormat.Loaded(lora, v, Map.of()));
      }
      Random r = new Random(3);
      int[][] ids = new int[batch][seqLen];
      for (int[] row : ids) {
        for (int i = 0; i < row.length; i++) {
          row[i] = r.nextInt(vocab);
        }
      }
      int[] mixed = new int[batch];
      for (int b = 0; b < batch; b++) {
        mixed[b] = b / (batch / adapters); // segments of batch/adapters rows
      }
      int[] one = new int[batch];
      double[] ratioOne = new double[rounds];
      double[] ratioSeparate = new double[rounds];
      double[] tMixed = new double[rounds];
      for (int i = 0; i < warmup + rounds; i++) {
        double mix = time(m, a, ids, mixed);
        double single = time(m, List.of(a.get(0)), ids, one);
        double separate = 0;
        int per = batch / adapters;
        for (int k = 0; k < adapters; k++) {
          int[][] part = java.util.Arrays.copyOfRange(ids, k * per, (k + 1) * per);
          separate += time(m, List.of(a.get(k)), part, new int[per]);
        }
        if (i >= warmup) {
          tMixed[i - warmup] = mix;
          ratioOne[i - warmup] = single / mix;
          ratioSeparate[i - warmup] = separate / mix;
        }
      }
      long tokens = (long) batch * seqLen;
      out.put("mixed_tokens_per_s", Math.round(tokens / StepBenchmark.median(tMixed)));
      out.put("mixed_throughput_vs_one_adapter", StepBenchmark.round(StepBenchmark.median(ratioOne)) + " (" + range(ratioOne) + ")");
      out.put("mixed_throughput_vs_separate_batches", StepBenchmark.round(StepBenchmark.median(ratioSeparate)) + " (" + range(ratioSeparate) + ")");
    }
    return out;
  }

  private static double time(LanguageModel m, List<AdapterFormat.Loaded> a, int[][] ids, int[] rowAdapter) {
    long t0 = System.nanoTime();
    try (NDManager s = m.manager().newSubManager()) {
      m.forward(MixedDelta.bind(s, a, rowAdapter), Batch.of(ids, new int[ids.length][ids[0].length])).getFloat(0, 0, 0);
    }
    return (System.nanoTime() - t0) / 1e9;
  }

  private static String range(double[] v) {
    double[] c = v.clone();
    java.util.Arrays.sort(c);
    return StepBenchmark.round(c[0]) + " to " + StepBenchmark.round(c[c.length - 1]);
  }
}
