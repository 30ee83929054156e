package io.lorafleet.worker.bench;

import io.lorafleet.worker.model.Dropout;
import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.lorafleet.worker.flat.FlatLayout;
import io.lorafleet.worker.flat.Trainable;
import io.lorafleet.worker.lora.DoraMethod;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.lora.VeraMethod;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.LinearSpec;
import io.lorafleet.worker.model.ModelConfig;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.TinyModelSpec;
import io.lorafleet.worker.quant.Quantization;
import io.lorafleet.worker.train.RecomputeStep;
import io.lorafleet.worker.train.FullModel;
import io.lorafleet.worker.train.TrainStep;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/**
 * LoRA step against full fine-tuning step on the same model and batch, in one process: tokens/s,
 * peak resident memory, and achieved FLOP/s against the measured fp32 matmul peak of this machine.
 * LoRA warms up first, so the peak RSS read after it is LoRA's; the one read after full
 * fine-tuning's warm-up is the process maximum, which full fine-tuning sets. Then --steps pairs of
 * steps run interleaved (LoRA, full, LoRA, full, ...); step times are medians, and the speed-up is
 * the median of the per-pair ratios, with their range.
 *
 * <p>FLOPs are counted for the projections only (2·in·out per token per matmul) plus attention
 * (4·T·hidden per token per layer, causal mask not discounted): forward F; full fine-tuning costs
 * 3F (forward, input gradients, weight gradients); LoRA costs about 2F (no weight gradients of
 * the frozen base).
 */
public final class StepBenchmark {
  private StepBenchmark() {}

  /**
   * What bench-step measures, as three groups.
   *
   * @param base the base: a random model of this shape, or a checkpoint
   * @param load the work timed
   * @param adapter what is compared
   */
  public record Settings(Base base, Load load, Adapter adapter) {
    public Settings {
      if (!List.of("llama", "bert", "distilbert", "roberta", "deberta-v2").contains(base.arch())) {
        throw new IllegalArgumentException("--arch must be llama, bert, roberta or deberta-v2 but found '" + base.arch() + "'");
      }
      if (!base.arch().equals("llama") && (load.checkpointing() || load.quantize().on() || !base.modelDir().isEmpty())) {
        throw new IllegalArgumentException("--arch " + base.arch() + " benchmarks LoRA against full fine-tuning (or --variants) on a random "
            + "encoder; --gradient-checkpointing, --quantize and --model apply to llama");
      }
    }

    boolean encoder() {
      return !base.arch().equals("llama");
    }
  }

  /**
   * @param arch the random model's model_type: llama, or an encoder (bert, roberta, deberta-v2) classifying each row into 2 labels
   * @param modelDir a checkpoint to load instead of a random model ("" for none)
   */
  public record Base(String arch, int hidden, int layers, int intermediate, int vocab, String modelDir) {}

  /**
   * @param seqLen tokens per row
   * @param batch rows per step
   * @param warmup steps run before the measured ones
   * @param steps measured steps
   * @param checkpointing LoRA only, through {@link RecomputeStep}: activation memory flat with sequence length
   * @param quantize the base quantized at load
   */
  public record Load(int seqLen, int batch, int warmup, int steps, boolean checkpointing, Quantization quantize) {}

  /**
   * @param rank LoRA's r
   * @param targets the adapted projections
   * @param variants LoRA against DoRA (same rank) and VeRA (PEFT's default rank 256) instead of against full fine-tuning
   * @param baseline also time the frozen base alone, interleaved
   */
  public record Adapter(int rank, List<String> targets, boolean variants, boolean baseline) {}

  public static Map<String, Object> run(Settings s) throws IOException {
    if (s.load().quantize().on() || !s.base().modelDir().isEmpty()) {
      return fromFiles(s);
    }
    Map<String, Object> out = new LinkedHashMap<>();
    TinyModelSpec spec = new TinyModelSpec(s.base().arch(), s.base().layers(), s.base().hidden(), s.base().hidden() / 64, s.base().hidden() / 64, s.base().intermediate(), s.base().vocab(),
        Math.max(s.load().seqLen(), 512), false);
    ModelConfig cfg = ModelConfig.fromJson(spec.configJson(1, 2), "bench");
    out.put("model", s.base().arch() + " H" + s.base().hidden() + " L" + s.base().layers() + " FFN" + s.base().intermediate() + " V" + s.base().vocab());
    out.put("batch", s.load().batch() + "x" + s.load().seqLen());
    out.put("lora_targets", String.join(",", s.adapter().targets()) + " r" + s.adapter().rank());
    out.put("threads", Runtime.getRuntime().availableProcessors());
    double peak = matmulPeak();
    out.put("matmul_peak_gflops", round(peak / 1e9));
    Batch batch = batch(s, cfg.vocabSize());
    long tokens = (long) s.load().batch() * s.load().seqLen();
    try (LanguageModel m = LanguageModel.fromTensors(cfg, ModelDirectory.randomTensors(cfg, 1), Device.cpu(), DataType.FLOAT32)) {
      out.put("base_parameters", m.parameterCount());
      double fwd = forwardFlopsPerToken(m, s.load().seqLen()) * tokens;
      long rssBase = rssKb();
      LoraModel lora = LoraModel.create(m, LoraConfig.of(s.adapter().rank(), 2.0 * s.adapter().rank(), s.adapter().targets()));
      float[] loraParams = lora.initialParams(1);
      warmUp(lora, loraParams, batch, s);
      long loraPeak = peakRssKb();
      var predicted = io.lorafleet.worker.plan.MemoryPlan.predict(m, lora, new io.lorafleet.worker.plan.MemoryPlan.Shapes(s.load().batch(), s.load().seqLen(), 1, 4,
          s.load().checkpointing()));
      out.put("plan_predicted_peak_lora_mb", predicted.get("worker_peak_mb"));
      if (s.load().checkpointing()) {
        // LoRA alone: layer checkpointing, blockwise attention and a chunked loss (full fine-tuning is not run)
        double[] step = new double[s.load().steps()];
        for (int i = 0; i < s.load().steps(); i++) {
          step[i] = timeStep(lora, loraParams, batch, s);
        }
        double sec = median(step);
        out.put("gradient_checkpointing", true);
        out.put("lora_trainable_parameters", lora.layout().size());
        out.put("lora_tokens_per_s", round(tokens / sec));
        out.put("rss_after_load_mb", rssBase / 1024);
        out.put("peak_rss_lora_mb", loraPeak / 1024);
        // the forward pass runs twice (once without a graph, once recomputed), so about 3x forward of work
        out.put("lora_achieved_gflops", round(3 * fwd / sec / 1e9));
        out.put("lora_fraction_of_peak", round(3 * fwd / sec / peak));
        return out;
      }
      if (s.adapter().variants()) {
        variants(s, m, lora, loraParams, batch, tokens, out);
        return out;
      }
      FullModel full = new FullModel(m);
      float[] fullParams = full.currentParams();
      warmUp(full, fullParams, batch, s);
      long fullPeak = peakRssKb();
      // Interleaved LoRA, full, LoRA, full, ...: a neighbour slowing this shared machine for a while
      // slows both sides of a pair, so the median of per-pair ratios is steadier than a ratio of medians.
      double[] loraStep = new double[s.load().steps()];
      double[] fullStep = new double[s.load().steps()];
      double[] ratio = new double[s.load().steps()];
      for (int i = 0; i < s.load().steps(); i++) {
        loraStep[i] = timeStep(lora, loraParams, batch);
        fullStep[i] = timeStep(full, fullParams, batch);
        ratio[i] = fullStep[i] / loraStep[i];
      }
      double loraSec = median(loraStep);
      double fullSec = median(fullStep);
      java.util.Arrays.sort(ratio);
      out.put("lora_trainable_parameters", lora.layout().size());
      out.put("lora_tokens_per_s", round(tokens / loraSec));
      out.put("full_tokens_per_s", round(tokens / fullSec));
      out.put("lora_speedup_vs_full", round(median(ratio)));
      out.put("lora_speedup_range", round(ratio[0]) + " to " + round(ratio[ratio.length - 1]));
      out.put("rss_after_load_mb", rssBase / 1024);
      out.put("peak_rss_lora_mb", loraPeak / 1024);
      out.put("peak_rss_full_mb", fullPeak / 1024);
      out.put("lora_achieved_gflops", round(2 * fwd / loraSec / 1e9));
      out.put("full_achieved_gflops", round(3 * fwd / fullSec / 1e9));
      out.put("lora_fraction_of_peak", round(2 * fwd / loraSec / peak));
      out.put("full_fraction_of_peak", round(3 * fwd / fullSec / peak));
    }
    return out;
  }

  /**
   * LoRA, DoRA and VeRA steps interleaved on one model and batch; each variant's time is reported
   * against LoRA's as the median of per-round ratios (a slow spell slows a whole round).
   */
  private static void variants(Settings s, LanguageModel m, LoraModel lora, float[] loraParams, Batch batch, long tokens, Map<String, Object> out) {
    LoraModel dora = LoraModel.create(m, LoraConfig.of(s.adapter().rank(), 2.0 * s.adapter().rank(), s.adapter().targets()).withMethod(DoraMethod.INSTANCE));
    LoraModel vera = LoraModel.create(m, LoraConfig.of(256, 256, s.adapter().targets()).withMethod(new VeraMethod(0.1, 0)));
    float[] doraParams = dora.initialParams(1);
    float[] veraParams = vera.initialParams(1);
    warmUp(dora, doraParams, batch, s);
    warmUp(vera, veraParams, batch, s);
    double[] l = new double[s.load().steps()];
    double[] d = new double[s.load().steps()];
    double[] v = new double[s.load().steps()];
    double[] dr = new double[s.load().steps()];
    double[] vr = new double[s.load().steps()];
    for (int i = 0; i < s.load().steps(); i++) {
      l[i] = timeStep(lora, loraParams, batch);
      d[i] = timeStep(dora, doraParams, batch);
      v[i] = timeStep(vera, veraParams, batch);
      dr[i] = d[i] / l[i];
      vr[i] = v[i] / l[i];
    }
    java.util.Arrays.sort(dr);
    java.util.Arrays.sort(vr);
    out.put("lora_trainable_parameters", lora.layout().size());
    out.put("dora_trainable_parameters", dora.layout().size());
    out.put("vera_trainable_parameters", vera.layout().slots().stream().filter(x -> !x.frozen()).mapToInt(FlatLayout.Slot::size).sum());
    out.put("lora_tokens_per_s", round(tokens / median(l)));
    out.put("dora_tokens_per_s", round(tokens / median(d)));
    out.put("vera_r256_tokens_per_s", round(tokens / median(v)));
    out.put("dora_step_time_vs_lora", round(median(dr)) + " (" + round(dr[0]) + " to " + round(dr[dr.length - 1]) + ")");
    out.put("vera_step_time_vs_lora", round(median(vr)) + " (" + round(vr[0]) + " to " + round(vr[vr.length - 1]) + ")");
  }

  /**
   * LoRA over a base loaded from files, tensor by tensor, as a worker loads it (quantized or not),
   * and for a quantized base against LoRA over the same base in fp32: the bytes of the quantized
   * projections and of the whole base against fp32, the peak RSS of the run over the loaded base
   * (read before any fp32 base is loaded), and the step time as the median of interleaved
   * per-pair ratios. The base is {@code modelDir}, or a random model of the settings' shape
   * written to a temporary directory.
   */
  static Map<String, Object> fromFiles(Settings s) throws IOException {
    Map<String, Object> out = new LinkedHashMap<>();
    Path dir;
    Path tmp = null;
    if (!s.base().modelDir().isEmpty()) {
      dir = Path.of(s.base().modelDir());
    } else {
      Base m = s.base();
      TinyModelSpec spec = new TinyModelSpec("llama", m.layers(), m.hidden(), m.hidden() / 64, m.hidden() / 64, m.intermediate(), m.vocab(),
          Math.max(s.load().seqLen(), 512), false);
      tmp = Files.createTempDirectory("lorafleet-bench-quant");
      dir = tmp;
      ModelConfig c = ModelConfig.fromJson(spec.configJson(1, 2), "bench");
      ModelDirectory.write(dir, spec.configJson(1, 2), ModelDirectory.randomTensors(c, 1));
    }
    try {
      long rssStart = rssKb();
      try (LanguageModel q = LanguageModel.load(dir, Device.cpu(), DataType.FLOAT32, s.load().quantize())) {
        ModelConfig cfg = q.config();
        out.put("model", cfg.modelType() + " H" + cfg.hidden() + " L" + cfg.layers() + " FFN" + cfg.intermediate() + " V" + cfg.vocabSize());
        out.put("batch", s.load().batch() + "x" + s.load().seqLen());
        out.put("lora_targets", String.join(",", s.adapter().targets()) + " r" + s.adapter().rank());
        out.put("quantization", q.quantization());
        out.put("gradient_checkpointing", s.load().checkpointing());
        out.put("threads", Runtime.getRuntime().availableProcessors());
        putBytes(out, q.bytes());
        Batch batch = batch(s, cfg.vocabSize());
        long tokens = (long) s.load().batch() * s.load().seqLen();
        LoraModel lora = LoraModel.create(q, LoraConfig.of(s.adapter().rank(), 2.0 * s.adapter().rank(), s.adapter().targets()));
        float[] p = lora.initialParams(1);
        out.put("rss_after_load_mb", rssKb() / 1024);
        warmUp(lora, p, batch, s);
        out.put("peak_rss_lora_mb", peakRssKb() / 1024);
        out.put("rss_at_start_mb", rssStart / 1024);
        var predicted = io.lorafleet.worker.plan.MemoryPlan.predict(q, lora, new io.lorafleet.worker.plan.MemoryPlan.Shapes(s.load().batch(), s.load().seqLen(), 1, 4,
            s.load().checkpointing(), q.quantization()));
        out.put("plan_predicted_peak_lora_mb", predicted.get("worker_peak_mb"));
        if (!s.adapter().baseline() || !q.isQuantized()) {
          double[] t = new double[s.load().steps()];
          for (int i = 0; i < s.load().steps(); i++) {
            t[i] = timeStep(lora, p, batch, s);
          }
          out.put("lora_tokens_per_s", round(tokens / median(t)));
          return out;
        }
        try (LanguageModel fp = LanguageModel.load(dir, Device.cpu(), DataType.FLOAT32)) {
          LoraModel fpLora = LoraModel.create(fp, LoraConfig.of(s.adapter().rank(), 2.0 * s.adapter().rank(), s.adapter().targets()));
          warmUp(fpLora, p, batch, s);
          out.put("peak_rss_with_fp32_base_too_mb", peakRssKb() / 1024);
          double[] qt = new double[s.load().steps()];
          double[] ft = new double[s.load().steps()];
          double[] ratio = new double[s.load().steps()];
          for (int i = 0; i < s.load().steps(); i++) {
            qt[i] = timeStep(lora, p, batch, s);
            ft[i] = timeStep(fpLora, p, batch, s);
            ratio[i] = qt[i] / ft[i];
          }
          java.util.Arrays.sort(ratio);
          out.put("lora_tokens_per_s", round(tokens / median(qt)));
          out.put("fp32_base_lora_tokens_per_s", round(tokens / median(ft)));
          out.put("step_time_vs_fp32_base", round(median(ratio)) + " (" + round(ratio[0]) + " to " + round(ratio[ratio.length - 1]) + ")");
        }
      }
      return out;
    } finally {
      if (tmp != null) {
        try (var files = Files.list(tmp)) {
          for (Path f : files.toList()) {
            Files.delete(f);
          }
        }
        Files.delete(tmp);
      }
    }
  }

  /** The base's size: parameters, bytes, and what quantization saved. */
  private static void putBytes(Map<String, Object> out, LanguageModel.Bytes b) {
    out.put("base_parameters", b.params());
    if (b.quantizedParams() > 0) {
      out.put("quantized_parameters", b.quantizedParams());
      out.put("quantized_modules_bytes", b.quantizedBytes());
      out.put("quantized_modules_bits_per_parameter", round(8.0 * b.quantizedBytes() / b.quantizedParams()));
      out.put("quantized_modules_vs_fp32", round4((double) b.quantizedBytes() / (4.0 * b.quantizedParams())));
    }
    out.put("base_bytes", b.total());
    out.put("base_bytes_per_parameter", round4((double) b.total() / b.params()));
    out.put("base_vs_fp32", round4((double) b.total() / (4.0 * b.params())));
  }

  private static double round4(double v) {
    return Math.round(v * 10000) / 10000.0;
  }

  static double forwardFlopsPerToken(LanguageModel m, int t) {
    double f = 0;
    for (LinearSpec l : m.linears()) {
      f += 2.0 * l.in() * l.out();
    }
    if (m.config().tieWordEmbeddings()) {
      f += 2.0 * m.config().hidden() * m.config().vocabSize();
    }
    return f + 4.0 * t * m.config().heads() * m.config().headDim() * m.config().layers();
  }

  static Batch batch(Settings s, int vocab) {
    Random r = new Random(3);
    int[][] ids = new int[s.load().batch()][s.load().seqLen()];
    for (int[] row : ids) {
      for (int i = 0; i < row.length; i++) {
        row[i] = r.nextInt(vocab);
      }
    }
    if (s.encoder()) { // one class label per row: the encoder's loss
      float[] labels = new float[s.load().batch()];
      for (int i = 0; i < labels.length; i++) {
        labels[i] = r.nextInt(2);
      }
      return Batch.classification(ids, labels);
    }
    return Batch.of(ids, ids);
  }

  static void warmUp(Trainable t, float[] params, Batch b, Settings s) {
    for (int i = 0; i < s.load().warmup(); i++) {
      timeStep(t, params, b, s);
    }
  }

  static double timeStep(Trainable t, float[] params, Batch b) {
    long t0 = System.nanoTime();
    TrainStep.run(t, params, List.of(b), Dropout.Plan.NONE);
    return (System.nanoTime() - t0) / 1e9;
  }

  static double timeStep(Trainable t, float[] params, Batch b, Settings s) {
    if (!s.load().checkpointing() || !(t instanceof LoraModel lora)) {
      return timeStep(t, params, b);
    }
    long t0 = System.nanoTime();
    RecomputeStep.run(lora, params, List.of(b), Dropout.Plan.NONE, 1.0);
    return (System.nanoTime() - t0) / 1e9;
  }

  static double median(double[] v) {
    double[] c = v.clone();
    java.util.Arrays.sort(c);
    return c[c.length / 2];
  }

  /** Best of five fp32 2048×2048 matmuls through the same engine. */
  static double matmulPeak() {
    int n = 2048;
    double best = 0;
    try (NDManager m = io.lorafleet.worker.model.Djl.newManager(Device.cpu(), "matmul-peak")) {
      NDArray a = m.randomNormal(new Shape(n, n));
      NDArray b = m.randomNormal(new Shape(n, n));
      a.matMul(b).close();
      for (int i = 0; i < 5; i++) {
        long t0 = System.nanoTime();
        NDArray c = a.matMul(b);
        c.getFloat(0, 0); // force completion
        double sec = (System.nanoTime() - t0) / 1e9;
        c.close();
        best = Math.max(best, 2.0 * n * n * n / sec);
      }
    }
    return best;
  }

  /** This process's resident memory now, in kB (/proc/self/status VmRSS; −1 where there is none). */
  public static long rssKb() throws IOException {
    return statusField("VmRSS:");
  }

  /** This process's peak resident memory so far, in kB (VmHWM; −1 where there is none). */
  public static long peakRssKb() throws IOException {
    return statusField("VmHWM:");
  }

  private static long statusField(String key) throws IOException {
    Path p = Path.of("/proc/self/status");
    if (!Files.isReadable(p)) {
      return -1;
    }
    for (String line : Files.readAllLines(p)) {
      if (line.startsWith(key)) {
        return Long.parseLong(line.replaceAll("[^0-9]", ""));
      }
    }
    return -1;
  }

  static double round(double v) {
    return Math.round(v * 1000) / 1000.0;
  }
}
