package io.lorafleet.worker.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.types.DataType;
import io.lorafleet.worker.TinyModels;
import io.lorafleet.worker.lora.DoraMethod;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.model.Dropout;
import io.lorafleet.worker.model.LanguageModel;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * One forward and backward over the rows of several adapters gives each adapter the gradient and
 * loss its own plain step gives, for adapters that differ in rank, alpha, dropout and rows of other
 * lengths, with the base model's own dropouts on (GPT-2) and off (Llama). In float64 the gradients
 * agree to two float32 ulps of the largest entry (the same math); in float32 to 1e-5 of it, since
 * the base's matmuls see more rows and MKL rounds them in another order. A part whose gradient is
 * not finite fails alone.
 */
class MixedStepTest {
  static List<MixedStep.Part> parts(LanguageModel base, boolean modelDropout) {
    LoraModel a = LoraModel.create(base, LoraConfig.ofTargetModules(4, 8, "all-linear").withDropout(0.1));
    LoraModel b = LoraModel.create(base, LoraConfig.ofTargetModules(8, 32, "all-linear").withDropout(0.0));
    LoraModel c = LoraModel.create(base, LoraConfig.ofTargetModules(2, 4, "all-linear").withDropout(0.3));
    Batch rowsA = Batch.of(new int[][] {{1, 5, 9, 13, 17, 21, 2}, {1, 30, 31, 32}}, new int[][] {{-100, -100, 9, 13, 17, 21, 2}, {-100, -100, 31, 32}})
        .withRowKeys(40);
    Batch rowsB = Batch.of(new int[][] {{1, 7, 8, 9, 10, 11, 12, 13, 2}}, new int[][] {{-100, -100, -100, 9, 10, 11, 12, 13, 2}}).withRowKeys(3);
    Batch rowsC = Batch.of(new int[][] {{1, 4, 6}, {1, 3, 3, 3, 3}, {1, 2}}, new int[][] {{-100, 4, 6}, {-100, -100, 3, 3, 3}, {-100, 2}}).withRowKeys(7);
    return List.of(new MixedStep.Part(a, RecomputeStepTest.perturbed(a, 1), rowsA, new Dropout.Plan(11, modelDropout)),
        new MixedStep.Part(b, RecomputeStepTest.perturbed(b, 2), rowsB, modelDropout ? new Dropout.Plan(5, true) : Dropout.Plan.NONE),
        new MixedStep.Part(c, RecomputeStepTest.perturbed(c, 3), rowsC, new Dropout.Plan(99, modelDropout)));
  }

  @ParameterizedTest
  @ValueSource(strings = {"llama/float64", "gpt2/float64", "llama/float32", "gpt2/float32"})
  void eachPartGetsTheGradientOfItsOwnPlainStep(String archAndDtype) {
    String arch = archAndDtype.split("/")[0];
    boolean f64 = archAndDtype.endsWith("64");
    double tolerance = f64 ? 2.4e-7 : 1e-5;
    boolean modelDropout = arch.equals("gpt2");
    try (LanguageModel base = RecomputeStepTest.model(arch, 7, f64 ? DataType.FLOAT64 : DataType.FLOAT32)) {
      List<MixedStep.Part> parts = parts(base, modelDropout);
      List<MixedStep.Outcome> mixed = MixedStep.run(parts, 1.0);
      for (int i = 0; i < parts.size(); i++) {
        MixedStep.Part p = parts.get(i);
        StepResult alone = TrainStep.run(p.lora(), p.params(), List.of(p.batch()), p.dropout());
        StepResult got = mixed.get(i).get();
        assertEquals(alone.tokens(), got.tokens());
        assertEquals(alone.lossSum(), got.lossSum(), (f64 ? 1e-12 : 1e-6) * Math.abs(alone.lossSum()), "part " + i + "'s loss");
        double max = 0;
        double diff = 0;
        for (int k = 0; k < alone.gradSum().length; k++) {
          max = Math.max(max, Math.abs(alone.gradSum()[k]));
          diff = Math.max(diff, Math.abs(alone.gradSum()[k] - got.gradSum()[k]));
        }
        assertTrue(max > 0 && diff <= tolerance * max, archAndDtype + " part " + i + ": gradients differ by " + diff + " of " + max);
      }
      // the masks are each part's own: with part 0's dropout seed changed, its gradient moves and the others' do not
      List<MixedStep.Part> reseeded = new ArrayList<>(parts);
      MixedStep.Part p0 = parts.get(0);
      reseeded.set(0, new MixedStep.Part(p0.lora(), p0.params(), p0.batch(), new Dropout.Plan(12, modelDropout)));
      List<MixedStep.Outcome> again = MixedStep.run(reseeded, 1.0);
      assertFalse(java.util.Arrays.equals(mixed.get(0).get().gradSum(), again.get(0).get().gradSum()));
      assertTrue(java.util.Arrays.equals(mixed.get(1).get().gradSum(), again.get(1).get().gradSum()), "part 1 is untouched");
    }
  }

  @Test
  void aPartWhoseGradientIsNotFiniteFailsAloneAndUnmixableAdaptersAreNamed() {
    try (LanguageModel base = RecomputeStepTest.model("llama", 7, DataType.FLOAT32)) {
      List<MixedStep.Part> parts = new ArrayList<>(parts(base, false));
      MixedStep.Part p1 = parts.get(1);
      float[] nan = p1.params().clone();
      nan[nan.length - 1] = Float.NaN;
      parts.set(1, new MixedStep.Part(p1.lora(), nan, p1.batch(), p1.dropout()));
      List<MixedStep.Outcome> out = MixedStep.run(parts, 1.0);
      assertTrue(out.get(1).nonFinite().isPresent());
      for (int i : new int[] {0, 2}) {
        MixedStep.Part p = parts.get(i);
        float[] alone = TrainStep.run(p.lora(), p.params(), List.of(p.batch()), p.dropout()).gradSum();
        float[] got = out.get(i).get().gradSum();
        for (int k = 0; k < alone.length; k++) {
          assertTrue(Float.isFinite(got[k]) && Math.abs(alone[k] - got[k]) <= 1e-5, "part " + i + " is untouched by part 1's NaN");
        }
      }
      LoraModel dora = LoraModel.create(base, LoraConfig.ofTargetModules(4, 8, "q_proj").withMethod(DoraMethod.INSTANCE));
      assertFalse(MixedStep.mixable(dora, p1.batch()), "DoRA's forward is not an additive term: it trains in a pass of its own");
      assertTrue(MixedStep.mixable(p1.lora(), p1.batch()));
    }
  }
}
