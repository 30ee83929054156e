package io.lorafleet.worker.train;

import io.lorafleet.worker.model.Dropout;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.types.DataType;
import io.lorafleet.worker.TinyModels;
import io.lorafleet.worker.flat.FlatLayout;
import io.lorafleet.worker.flat.Trainable;
import io.lorafleet.worker.lora.AdaloraMethod;
import io.lorafleet.worker.lora.DoraMethod;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.lora.VeraMethod;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.TinyModelSpec;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Analytic gradients of the summed target-token loss against float64 central finite differences.
 * The model runs in float64; h = 2^-14 so that p ± h is exact in the float parameter buffer.
 * Tolerance: |analytic − numeric| ≤ 1e-6 + 1e-4·|numeric| (truncation error O(h²) ≈ 4e-9).
 */
class GradientCheckTest {
  private static final float H = 0x1p-14f;

  static Batch batch() {
    // Two rows of different length (right-padded), with context positions masked.
    return Batch.of(
        new int[][] {{1, 5, 9, 13, 17, 21, 2}, {1, 30, 31, 32, 33}},
        new int[][] {{-100, -100, -100, 13, 17, 21, 2}, {-100, -100, 31, 32, 33}});
  }

  /**
   * An encoder's batch: two right-padded rows of text pairs, with class ids, or values when the head
   * regresses; their token types are 0 and 1 where the model has two (BERT), else all 0 (RoBERTa).
   */
  static Batch batch(Trainable t) {
    if (!t.base().config().arch().encoder()) {
      return batch();
    }
    float[] y = t.base().config().regression() ? new float[] {0.7f, -1.3f} : new float[] {1, 0};
    int[][] types = t.base().config().raw().path("type_vocab_size").asInt(0) > 1 ? new int[][] {{0, 0, 0, 0, 1, 1, 1, 1}, {0, 0, 0, 1, 1}} : new int[2][0];
    return Batch.classification(new int[][] {{1, 5, 9, 2, 13, 17, 21, 2}, {1, 30, 2, 31, 2}}, types, y);
  }

  /** The batch's loss sum under these dropout masks ({@link Dropout#OFF}: eval mode), without a graph. */
  static double loss(Trainable t, float[] p, Batch b, Dropout masks) {
    try (ai.djl.ndarray.NDManager step = t.base().manager().newSubManager()) {
      Trainable.Bound bound = t.bind(step, p, false, masks);
      return TokenLoss.value(TrainStep.lossSum(step, t.base().forward(bound.context(), b), b));
    }
  }

  static void check(Trainable t, float[] params, int samplesPerSlot, long seed) {
    check(t, params, samplesPerSlot, seed, Dropout.Plan.NONE);
  }

  /** As {@link #check(Trainable, float[], int, long)} in train mode: the step's masks held fixed in every loss the differences take. */
  static void check(Trainable t, float[] params, int samplesPerSlot, long seed, Dropout.Plan dropout) {
    Batch b = batch(t);
    Dropout masks = dropout.over(b);
    StepResult r = TrainStep.run(t, params, List.of(b), dropout);
    assertEquals(loss(t, params, b, masks), r.lossSum(), 1e-9 * (1 + Math.abs(r.lossSum())), "the step's loss is the loss under its masks");
    assertEquals(b.targetTokens(), r.tokens());
    Random rng = new Random(seed);
    int checked = 0;
    double maxAbs = 0;
    for (FlatLayout.Slot s : t.layout().slots()) {
      for (int k = 0; k < samplesPerSlot && !s.frozen(); k++) {
        int i = s.offset() + rng.nextInt(s.size());
        float orig = params[i];
        params[i] = orig + H;
        double up = loss(t, params, b, masks);
        params[i] = orig - H;
        double down = loss(t, params, b, masks);
        params[i] = orig;
        double numeric = (up - down) / (2.0 * H);
        double analytic = r.gradSum()[i];
        maxAbs = Math.max(maxAbs, Math.abs(numeric));
        assertEquals(numeric, analytic, 1e-6 + 1e-4 * Math.abs(numeric), s.key() + "[" + (i - s.offset()) + "]");
        checked++;
      }
    }
    assertTrue(checked > 0 && maxAbs > 1e-4, "gradients checked must be non-trivial, max |g| = " + maxAbs);
  }

  static TinyModelSpec spec(String name) {
    return switch (name) {
      case "llama" -> TinyModels.LLAMA;
      case "qwen2" -> TinyModels.QWEN2;
      case "gptj" -> TinyModels.GPTJ;
      case "roberta" -> TinyModels.ROBERTA;
      case "bert" -> TinyModels.BERT;
      case "distilbert" -> TinyModels.DISTILBERT;
      case "deberta" -> TinyModels.DEBERTA;
      default -> TinyModels.GPT2;
    };
  }

  /**
   * The base model's own dropouts in train mode, LoRA's dropout beside them: each row's masks are
   * fixed by its key, so the step's gradient is that of the loss under those masks, which finite
   * differences of the same loss check. Every rate is non-zero, set where the config class defaults it to 0.
   */
  @ParameterizedTest
  @ValueSource(strings = {"llama", "gpt2", "gptj", "roberta", "bert", "distilbert", "deberta", "debertaconv"})
  void modelDropoutGradientsMatchFiniteDifferencesWithFixedMasks(String arch) {
    var json = spec(arch.replace("conv", "")).configJson(1, 2);
    switch (arch) {
      case "llama" -> json.put("attention_dropout", 0.2);
      case "gptj" -> json.put("embd_pdrop", 0.1).put("attn_pdrop", 0.2).put("resid_pdrop", 0.15);
      case "debertaconv" -> json.put("conv_kernel_size", 3).put("conv_act", "gelu").put("pooler_dropout", 0.1);
      default -> { } // GPT-2's, BERT's, RoBERTa's, DistilBERT's and DeBERTa's defaults are 0.1 (DistilBERT's classifier 0.2)
    }
    var config = io.lorafleet.worker.model.ModelConfig.fromJson(json, arch);
    try (LanguageModel m = LanguageModel.fromTensors(config, TinyModels.tensors(config, 7), ai.djl.Device.cpu(), DataType.FLOAT64)) {
      LoraModel lora = LoraModel.create(m, LoraConfig.of(3, 6, List.of("all-linear")).withDropout(0.1));
      float[] p = lora.initialParams(3);
      Random rng = new Random(5);
      for (int i = 0; i < p.length; i++) {
        p[i] += (float) (rng.nextGaussian() * 0.2);
      }
      Batch b = batch(lora);
      Dropout.Plan plan = new Dropout.Plan(21, true);
      double train = loss(lora, p, b, plan.over(b));
      assertTrue(Math.abs(train - loss(lora, p, b, Dropout.Plan.loraOnly(21).over(b))) > 1e-6, "the model's dropouts add to LoRA's (--model-dropout off)");
      assertTrue(Math.abs(train - loss(lora, p, b, Dropout.OFF)) > 1e-6, "train mode is not eval mode");
      check(lora, p, 3, 11, plan);
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"llama", "qwen2", "gpt2", "gptj", "roberta", "bert", "distilbert", "deberta"})
  void loraGradientsMatchFiniteDifferences(String arch) {
    try (LanguageModel m = TinyModels.model(spec(arch), 7, DataType.FLOAT64)) {
      LoraModel lora = LoraModel.create(m, LoraConfig.of(3, 6, List.of("all-linear")).withBias("lora_only"));
      float[] p = lora.initialParams(3);
      Random rng = new Random(5);
      for (int i = 0; i < p.length; i++) {
        p[i] += (float) (rng.nextGaussian() * 0.2); // B = 0 at init would make dL/dA vanish
      }
      check(lora, p, 3, 11);
    }
  }

  /**
   * Encoders' LoRA, with the classification head trained whole (modules_to_save), through
   * cross-entropy over three classes and through regression (num_labels 1, squared error).
   */
  @ParameterizedTest
  @ValueSource(strings = {"roberta-3", "roberta-1", "bert-3", "bert-1", "distilbert-3", "distilbert-1", "deberta-3", "deberta-1", "debertaconv-2"})
  void encoderHeadsAndLossesGradients(String which) {
    String[] parts = which.split("-");
    TinyModelSpec spec = spec(parts[0].replace("conv", ""));
    var json = spec.configJson(1, 2);
    if (parts[0].endsWith("conv")) { // DeBERTa-v2 xxlarge's ConvLayer after the first layer
      json.put("conv_kernel_size", 3).put("conv_act", "gelu");
    }
    json.remove("id2label");
    json.put("num_labels", Integer.parseInt(parts[1]));
    var config = io.lorafleet.worker.model.ModelConfig.fromJson(json, which);
    var tensors = new java.util.LinkedHashMap<>(TinyModels.tensors(config, 9));
    // a base without this head (or BERT's pooler, DistilBERT's pre_classifier): HeadInit makes them
    tensors.keySet().removeIf(k -> k.startsWith("classifier") || k.startsWith("pooler") || k.startsWith("bert.pooler") || k.startsWith("pre_classifier"));
    try (LanguageModel m = LanguageModel.fromTensors(config, tensors, ai.djl.Device.cpu(), DataType.FLOAT64)) {
      LoraModel lora = LoraModel.create(m, LoraConfig.of(2, 4, switch (parts[0]) {
        case "roberta", "bert" -> List.of("dense", "value");
        case "distilbert" -> List.of("q_lin", "v_lin", "lin2");
        default -> List.of("query_proj", "key_proj", "value_proj");
      }));
      assertTrue(lora.targets().stream().noneMatch(t -> t.module().name().startsWith("classifier")), "dense names no head module");
      assertEquals(m.headTensors(), lora.biases(), "the head is trained whole");
      float[] p = lora.initialParams(4);
      Random rng = new Random(6);
      for (int i = 0; i < p.length; i++) {
        p[i] += (float) (rng.nextGaussian() * 0.2);
      }
      check(lora, p, 4, 12);
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"llama", "gpt2"})
  void rsLoraAndRankPatternGradients(String arch) {
    try (LanguageModel m = TinyModels.model(spec(arch), 8, DataType.FLOAT64)) {
      String target = arch.equals("gpt2") ? "c_attn" : "v_proj";
      LoraConfig cfg = LoraConfig.of(2, 4, List.of(target, arch.equals("gpt2") ? "c_fc" : "down_proj"))
          .withRslora(true).withPatterns(java.util.Map.of(target, 5), java.util.Map.of(target, 3.0));
      LoraModel lora = LoraModel.create(m, cfg);
      float[] p = lora.initialParams(4);
      Random rng = new Random(6);
      for (int i = 0; i < p.length; i++) {
        p[i] += (float) (rng.nextGaussian() * 0.2);
      }
      check(lora, p, 4, 12);
    }
  }

  /** DoRA's norm is detached by design (PEFT, DoRA paper section 4.3): the check differences the loss with the norm held at its value. */
  @ParameterizedTest
  @ValueSource(strings = {"llama", "qwen2", "gpt2", "gptj", "deberta"})
  void doraGradientsMatchFiniteDifferencesWithTheNormHeld(String arch) {
    try (LanguageModel m = TinyModels.model(spec(arch), 10, DataType.FLOAT64)) {
      LoraModel lora = LoraModel.create(m, LoraConfig.of(3, 6, List.of("all-linear")).withBias("lora_only").withMethod(DoraMethod.INSTANCE).withInit("false"));
      float[] p = lora.initialParams(3);
      Random rng = new Random(7);
      for (int i = 0; i < p.length; i++) {
        p[i] += (float) (rng.nextGaussian() * 0.05);
      }
      check(lora.withNormsFixedAt(p), p, 3, 14);
    }
  }

  /** VeRA: λ_b and λ_d get gradients; the shared projections are frozen and get none. */
  @ParameterizedTest
  @ValueSource(strings = {"llama", "gpt2"})
  void veraGradientsMatchFiniteDifferences(String arch) {
    try (LanguageModel m = TinyModels.model(spec(arch), 11, DataType.FLOAT64)) {
      LoraModel vera = LoraModel.create(m, LoraConfig.of(5, 5, List.of("all-linear")).withBias("lora_only")
          .withMethod(new VeraMethod(0.1, 3)));
      float[] p = vera.initialParams(3);
      Random rng = new Random(8);
      for (int i = 0; i < p.length; i++) {
        p[i] += (float) (rng.nextGaussian() * 0.3); // λ_b = 0 at init would make dL/dλ_d vanish
      }
      StepResult r = TrainStep.run(vera, p, List.of(batch()), Dropout.Plan.NONE);
      for (FlatLayout.Slot s : vera.layout().slots()) {
        for (int i = s.offset(); s.frozen() && i < s.offset() + s.size(); i++) {
          assertEquals(0f, r.gradSum()[i], s.key() + " is frozen");
        }
      }
      check(vera, p, 3, 15);
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"llama", "gpt2"})
  void adaloraGradientsMatchFiniteDifferences(String arch) {
    try (LanguageModel m = TinyModels.model(spec(arch), 12, DataType.FLOAT64)) {
      LoraModel ada = LoraModel.create(m, LoraConfig.of(8, 6, List.of("all-linear")).withBias("lora_only")
          .withMethod(AdaloraMethod.of(3, 2, 0, 0, 1, 0.85, 0.85, 0.5, 10)));
      float[] p = ada.initialParams(3);
      Random rng = new Random(9);
      for (int i = 0; i < p.length; i++) {
        p[i] += (float) (rng.nextGaussian() * 0.3); // E = 0 at init would make dL/dA and dL/dB vanish
      }
      check(ada, p, 3, 16);
    }
  }

  /**
   * QLoRA: LoRA gradients over an NF4 (double-quantized) base and over a GPTQ INT4 base (v1 zeros,
   * act-order permutation), in float64 over the dequantized weights. The base gets no gradient.
   */
  @ParameterizedTest
  @ValueSource(strings = {"llama-nf4", "gpt2-nf4", "gptj-nf4", "llama-gptq", "gpt2-gptq"})
  void loraGradientsOverQuantizedBasesMatchFiniteDifferences(String which) throws Exception {
    String arch = which.substring(0, which.indexOf('-'));
    LanguageModel m = which.endsWith("nf4")
        ? LanguageModel.fromTensors(TinyModels.config(spec(arch)), TinyModels.tensors(spec(arch), 13), ai.djl.Device.cpu(), DataType.FLOAT64,
            io.lorafleet.worker.quant.Quantization.NF4)
        : LanguageModel.load(io.lorafleet.worker.QuantFixtures.gptq(tmp.resolve(which), spec(arch), 13, 8, true, false), ai.djl.Device.cpu(), DataType.FLOAT64);
    try (m) {
      assertTrue(m.isQuantized());
      LoraModel lora = LoraModel.create(m, LoraConfig.of(3, 6, List.of("all-linear")).withBias("lora_only"));
      float[] p = lora.initialParams(3);
      Random rng = new Random(10);
      for (int i = 0; i < p.length; i++) {
        p[i] += (float) (rng.nextGaussian() * 0.2);
      }
      check(lora, p, 3, 17);
    }
  }

  @org.junit.jupiter.api.io.TempDir java.nio.file.Path tmp;

  @ParameterizedTest
  @ValueSource(strings = {"llama", "gpt2", "gptj", "roberta"})
  void fullFineTuningGradients(String arch) {
    try (LanguageModel m = TinyModels.model(spec(arch), 9, DataType.FLOAT64)) {
      FullModel full = new FullModel(m);
      check(full, full.currentParams(), 1, 13);
    }
  }
}
