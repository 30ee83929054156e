package io.lorafleet.driver.optim;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lorafleet.worker.flat.FlatLayout;
import io.lorafleet.worker.lora.AdaloraMethod;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.lora.LoraTarget;
import io.lorafleet.worker.model.ModelSkeleton;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** AdaLoRA's schedule, masking and orthogonal regularization against values worked out by hand. */
class RankAllocatorTest {
  @TempDir static Path dir;

  static LoraModel adalora(int tinit, int tfinal, int total, int deltaT) throws Exception {
    Path model = dir.resolve("m");
    if (!java.nio.file.Files.exists(model)) {
      io.lorafleet.worker.model.ModelDirectory.initModel(model, new io.lorafleet.worker.model.TinyModelSpec("llama", 2, 32, 4, 2, 48, 1, 64, false),
          List.of("a", "b", "c"), 3);
    }
    return LoraModel.create(ModelSkeleton.read(model), LoraConfig.of(8, 8, List.of("q_proj")).withMethod(AdaloraMethod.of(2, 1, tinit, tfinal,
        deltaT, 0.85, 0.85, 0.5, total)));
  }

  @Test
  void theCubicBudget() throws Exception {
    // 2 modules (q_proj in 2 layers) of init_r 2, target_r 1: budgets 4 and 2; tinit 1, tfinal 2, total 10, deltaT 2
    RankAllocator a = new RankAllocator(adalora(1, 2, 10, 2));
    assertEquals(new RankAllocator.Budget(4, false), a.schedule(0));
    assertEquals(new RankAllocator.Budget(4, false), a.schedule(1), "t <= tinit");
    // t = 2: (1 - 1/7)^3 = 0.6297; 2·0.6297 + 2 = 3.26 -> 3, and 2 % deltaT == 0
    assertEquals(new RankAllocator.Budget(3, true), a.schedule(2));
    // t = 3: (1 - 2/7)^3 = 0.3644; 2·0.3644 + 2 = 2.73 -> 2, 3 % 2 != 0
    assertEquals(new RankAllocator.Budget(2, false), a.schedule(3));
    assertEquals(new RankAllocator.Budget(2, true), a.schedule(8), "t = total - tfinal: the target");
    assertEquals(new RankAllocator.Budget(2, true), a.schedule(9), "final phase");
  }

  @Test
  void theLeastImportantTripletsAreMasked() throws Exception {
    LoraModel lora = adalora(0, 0, 4, 1);
    RankAllocator a = new RankAllocator(lora);
    // Smoothed importance Ī = 1 on every E entry, Ū = u; A and B at 0. With a zero gradient the update gives
    // Ī' = 0.85 and Ū' = 0.85·u + 0.15·0.85, so the scores are ordered as u.
    float[] ipt = new float[lora.layout().size()];
    float[] unc = new float[lora.layout().size()];
    float[][] u = {{0.1f, 0.4f}, {0.3f, 0.2f}};
    for (int m = 0; m < 2; m++) {
      FlatLayout.Slot e = lora.layout().slot(lora.targets().get(m).keyAdaE()).orElseThrow();
      for (int k = 0; k < 2; k++) {
        ipt[e.offset() + k] = 1;
        unc[e.offset() + k] = u[m][k];
      }
    }
    a.restore(ipt, unc, Map.of());
    float[] p = new float[lora.layout().size()];
    java.util.Arrays.fill(p, 1f);
    // t = 1 of 4: (1 - 1/4)^3 = 0.421875; 2·0.421875 + 2 = 2.84 -> 2: cut init 4 - 2 = 2 triplets, those scoring <= the 2nd smallest
    a.afterStep(p, new float[p.length], 1f, 1);
    assertEquals(0.85f, a.sensitivity()[lora.layout().slot(lora.targets().get(0).keyAdaE()).orElseThrow().offset()], 1e-7f);
    LoraTarget t0 = lora.targets().get(0);
    LoraTarget t1 = lora.targets().get(1);
    assertEquals(Map.of(t0.module().name() + ".lora_E", List.of(false, true), t1.module().name() + ".lora_E", List.of(true, false)), a.pattern());
    FlatLayout.Slot e0 = lora.layout().slot(t0.keyAdaE()).orElseThrow();
    FlatLayout.Slot e1 = lora.layout().slot(t1.keyAdaE()).orElseThrow();
    assertEquals(0f, p[e0.offset()]);
    assertEquals(1f, p[e0.offset() + 1]);
    assertEquals(1f, p[e1.offset()]);
    assertEquals(0f, p[e1.offset() + 1]);
    assertEquals(1f, p[lora.layout().slot(t0.keyAdaA()).orElseThrow().offset()], "A and B are never masked");
  }

  @Test
  void theOrthogonalRegularizationGradientMatchesFiniteDifferences() throws Exception {
    LoraModel lora = adalora(0, 0, 4, 1);
    RankAllocator a = new RankAllocator(lora);
    float[] p = new float[lora.layout().size()];
    Random r = new Random(4);
    for (int i = 0; i < p.length; i++) {
      p[i] = (float) (r.nextGaussian() * 0.5);
    }
    float[] g = new float[p.length];
    double value = a.addOrthogonalRegularization(p, g, 1f);
    assertTrue(value > 0);
    float h = 0x1p-10f;
    int checked = 0;
    for (LoraTarget t : lora.targets()) {
      for (String key : List.of(t.keyAdaA(), t.keyAdaB())) {
        FlatLayout.Slot s = lora.layout().slot(key).orElseThrow();
        for (int n = 0; n < 5; n++) {
          int i = s.offset() + r.nextInt(s.size());
          float orig = p[i];
          p[i] = orig + h;
          double up = a.addOrthogonalRegularization(p, new float[p.length], 1f);
          p[i] = orig - h;
          double down = a.addOrthogonalRegularization(p, new float[p.length], 1f);
          p[i] = orig;
          double numeric = (up - down) / (2 * h);
          assertEquals(numeric, g[i], 1e-4 + 1e-3 * Math.abs(numeric), key + "[" + (i - s.offset()) + "]");
          checked++;
        }
      }
    }
    assertEquals(20, checked);
    FlatLayout.Slot e = lora.layout().slot(lora.targets().get(0).keyAdaE()).orElseThrow();
    assertEquals(0f, g[e.offset()], "E is not regularized");
  }
}
