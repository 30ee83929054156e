package io.lorafleet.worker.train;

import io.lorafleet.worker.model.Dropout;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.worker.TinyModels;
import io.lorafleet.worker.flat.FlatLayout;
import io.lorafleet.worker.lora.AdaloraMethod;
import io.lorafleet.worker.lora.DoraMethod;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.lora.VeraMethod;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.ModelConfig;
import io.lorafleet.worker.model.TinyModelSpec;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The memory-flat step (layer checkpointing, blockwise attention, chunked loss) computes the plain
 * step's gradient: every tensor within 1e-6 of its largest entry (float32), and float64 finite
 * differences (as in GradientCheckTest). Blocks and chunks of 3 and 4 tokens make every piece run
 * several times on these short rows.
 */
class RecomputeStepTest {
  static final RecomputeStep.Plan SMALL = new RecomputeStep.Plan(3, 4);

  static LanguageModel model(String arch, long seed, DataType dtype) {
    if (!arch.equals("mistral")) {
      return TinyModels.model(arch.equals("qwen2") ? TinyModels.QWEN2 : arch.equals("gpt2") ? TinyModels.GPT2 : arch.equals("gptj") ? TinyModels.GPTJ
          : TinyModels.LLAMA, seed, dtype);
    }
    // Mistral with a sliding window (3) shorter than the rows
    TinyModelSpec spec = new TinyModelSpec("mistral", 2, 16, 4, 2, 24, 37, 64, false);
    var json = spec.configJson(1, 2);
    json.put("sliding_window", 3);
    return LanguageModel.fromTensors(ModelConfig.fromJson(json, "mistral"), TinyModels.tensors(spec, seed), Device.cpu(), dtype);
  }

  /** Unpadded, right-padded, and packed rows (segments restart positions). */
  static List<Batch> batches() {
    Batch padded = Batch.of(new int[][] {{1, 5, 9, 13, 17, 21, 2, 8, 3}, {1, 30, 31, 32, 33}},
        new int[][] {{-100, -100, -100, 13, 17, 21, 2, 8, 3}, {-100, -100, 31, 32, 33}});
    Batch packed = Batch.packed(new int[][] {{1, 4, 6, 2, 1, 7, 8, 9, 2}}, new int[][] {{-100, -100, 6, 2, -100, -100, 8, 9, 2}},
        new int[][] {{0, 1, 2, 3, 0, 1, 2, 3, 4}});
    return List.of(padded, packed);
  }

  static float[] perturbed(LoraModel lora, long seed) {
    float[] p = lora.initialParams(seed);
    Random rng = new Random(seed);
    for (int i = 0; i < p.length; i++) {
      p[i] += (float) (rng.nextGaussian() * 0.2); // B = 0 at init would make dL/dA vanish
    }
    return p;
  }

  @ParameterizedTest
  @ValueSource(strings = {"llama", "qwen2", "mistral", "gpt2", "gptj"})
  void theGradientEqualsThePlainStepsWithDropoutPaddingAndPacking(String arch) {
    try (LanguageModel m = model(arch, 7, DataType.FLOAT32)) {
      assertCheckpointedEqualsPlain(LoraModel.create(m, LoraConfig.of(3, 6, List.of("all-linear")).withBias("lora_only").withDropout(0.2)));
    }
  }

  /** Llama's attention_dropout and GPT-J's three dropouts, which their configs default to 0, set: blocks of attention rows drop as the whole matrix does. */
  @ParameterizedTest
  @ValueSource(strings = {"llama", "gptj"})
  void theModelsDropoutsGiveThePlainStepsGradient(String arch) {
    TinyModelSpec spec = arch.equals("gptj") ? TinyModels.GPTJ : TinyModels.LLAMA;
    var json = spec.configJson(1, 2);
    if (arch.equals("gptj")) {
      json.put("embd_pdrop", 0.1).put("attn_pdrop", 0.2).put("resid_pdrop", 0.15);
    } else {
      json.put("attention_dropout", 0.2);
    }
    ModelConfig c = ModelConfig.fromJson(json, arch);
    try (LanguageModel m = LanguageModel.fromTensors(c, TinyModels.tensors(c, 7), Device.cpu(), DataType.FLOAT32)) {
      LoraModel lora = LoraModel.create(m, LoraConfig.of(3, 6, List.of("all-linear")));
      float[] p = perturbed(lora, 3);
      assertTrue(Math.abs(TrainStep.run(lora, p, batches(), new Dropout.Plan(42, true)).lossSum() - TrainStep.run(lora, p, batches(),
          Dropout.Plan.NONE).lossSum()) > 1e-4, "the dropouts are on");
      assertCheckpointedEqualsPlain(lora);
    }
  }

  /** QLoRA: over an NF4 base each projection is dequantized inside its layer's scope, in the forward pass and again in the recomputation. */
  @ParameterizedTest
  @ValueSource(strings = {"llama", "gpt2"})
  void overAnNf4BaseTheGradientEqualsThePlainSteps(String arch) {
    TinyModelSpec spec = arch.equals("gpt2") ? TinyModels.GPT2 : TinyModels.LLAMA;
    try (LanguageModel m = LanguageModel.fromTensors(TinyModels.config(spec), TinyModels.tensors(spec, 8), Device.cpu(), DataType.FLOAT32,
        io.lorafleet.worker.quant.Quantization.NF4)) {
      assertTrue(m.isQuantized());
      assertCheckpointedEqualsPlain(LoraModel.create(m, LoraConfig.of(3, 6, List.of("all-linear")).withDropout(0.2)));
    }
  }

  /** DoRA (its dropout branch included), VeRA (frozen projections) and AdaLoRA take the checkpointed path too. */
  @ParameterizedTest
  @ValueSource(strings = {"dora", "vera", "adalora"})
  void everyVariantGivesThePlainStepsGradient(String variant) {
    try (LanguageModel m = model("llama", 7, DataType.FLOAT32)) {
      LoraConfig c = LoraConfig.of(3, 6, List.of("all-linear")).withDropout(0.2);
      c = switch (variant) {
        case "dora" -> c.withMethod(DoraMethod.INSTANCE);
        case "vera" -> c.withMethod(new VeraMethod(0.1, 1));
        default -> c.withMethod(AdaloraMethod.of(3, 2, 0, 0, 1, 0.85, 0.85, 0.5, 10));
      };
      assertCheckpointedEqualsPlain(LoraModel.create(m, c));
    }
  }

  static void assertCheckpointedEqualsPlain(LoraModel lora) {
    float[] p = perturbed(lora, 3);
    // the model's own dropouts too (GPT-2's by default): each block of attention rows draws its rows of the whole matrix's mask
    StepResult plain = TrainStep.run(lora, p, batches(), new Dropout.Plan(42, true));
    StepResult flat = RecomputeStep.run(lora, p, batches(), new Dropout.Plan(42, true), SMALL);
    assertEquals(plain.tokens(), flat.tokens());
    assertEquals(plain.lossSum(), flat.lossSum(), 1e-5 * Math.abs(plain.lossSum()));
    for (FlatLayout.Slot s : lora.layout().slots()) {
      double max = 0;
      for (int i = s.offset(); i < s.offset() + s.size(); i++) {
        max = Math.max(max, Math.abs(plain.gradSum()[i]));
      }
      for (int i = s.offset(); i < s.offset() + s.size(); i++) {
        // fp32: blockwise attention sums in another order; 2e-6 of the slot's largest gradient is rounding, a wrong term is O(1)
        assertEquals(plain.gradSum()[i], flat.gradSum()[i], 2e-6 * max + 1e-12, s.key() + "[" + (i - s.offset()) + "]");
      }
    }
    assertTrue(plain.lossSum() > 0);
  }

  @ParameterizedTest
  @ValueSource(strings = {"llama", "mistral", "gpt2", "gptj"})
  void theGradientMatchesFiniteDifferences(String arch) {
    final float h = 0x1p-14f;
    try (LanguageModel m = model(arch, 8, DataType.FLOAT64)) {
      List<String> targets = switch (arch) {
        case "gpt2" -> List.of("c_attn", "c_proj", "c_fc");
        case "gptj" -> List.of("q_proj", "v_proj", "out_proj", "fc_out", "lm_head");
        default -> List.of("q_proj", "v_proj", "o_proj", "down_proj", "lm_head");
      };
      LoraModel lora = LoraModel.create(m, LoraConfig.of(2, 4, targets).withBias(arch.equals("gpt2") ? "all" : "none"));
      float[] p = perturbed(lora, 4);
      List<Batch> b = batches();
      StepResult r = RecomputeStep.run(lora, p, b, Dropout.Plan.NONE, SMALL);
      Random rng = new Random(9);
      double maxAbs = 0;
      for (FlatLayout.Slot s : lora.layout().slots()) {
        for (int k = 0; k < 3; k++) {
          int i = s.offset() + rng.nextInt(s.size());
          float orig = p[i];
          p[i] = orig + h;
          double up = TrainStep.evaluate(lora, p, b).lossSum();
          p[i] = orig - h;
          double down = TrainStep.evaluate(lora, p, b).lossSum();
          p[i] = orig;
          double numeric = (up - down) / (2.0 * h);
          maxAbs = Math.max(maxAbs, Math.abs(numeric));
          assertEquals(numeric, r.gradSum()[i], 1e-6 + 1e-4 * Math.abs(numeric), s.key() + "[" + (i - s.offset()) + "]");
        }
      }
      assertTrue(maxAbs > 1e-4, "gradients checked must be non-trivial, max |g| = " + maxAbs);
    }
  }
}
