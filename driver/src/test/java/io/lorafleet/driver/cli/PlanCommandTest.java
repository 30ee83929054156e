package io.lorafleet.driver.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.ModelSkeleton;
import io.lorafleet.worker.model.TinyModelSpec;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.plan.MemoryPlan;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class PlanCommandTest {
  @TempDir Path tmp;

  @Test
  void aJobThatWillNotFitFailsWithAdvice() throws Exception {
    Path model = tmp.resolve("m");
    ModelDirectory.initModel(model, new TinyModelSpec("llama", 2, 64, 4, 2, 96, 1, 8192, false), List.of("a", "b", "c"), 1);
    ModelSkeleton base = ModelSkeleton.read(model);
    LoraModel lora = LoraModel.create(base, LoraConfig.of(8, 16, List.of("q_proj", "v_proj")));
    var plain = MemoryPlan.predict(base, lora, new MemoryPlan.Shapes(4, 8192, 2, 4, false));
    var flat = MemoryPlan.predict(base, lora, new MemoryPlan.Shapes(4, 8192, 2, 4, true));
    var shorter = MemoryPlan.predict(base, lora, new MemoryPlan.Shapes(4, 4096, 2, 4, false));
    assertTrue(plain.get("worker_activations_mb") > 3.5 * shorter.get("worker_activations_mb"), "attention makes plain activations grow with T^2");
    assertTrue(flat.get("worker_peak_mb") < plain.get("worker_peak_mb") / 4, "checkpointing: " + flat + " vs " + plain);
    var r = OutputsTest.cli("plan", "--model", model.toString(), "--seq-len", "8192", "--micro-batch", "4", "--target-modules", "q_proj,v_proj",
        "--worker-memory-mb", Long.toString(plain.get("worker_peak_mb") / 2));
    assertEquals(2, r.getKey());
    assertTrue(r.getValue().contains("a worker needs about " + plain.get("worker_peak_mb") + " MB") && r.getValue().contains("--gradient-checkpointing ("
        + flat.get("worker_peak_mb") + " MB)") && r.getValue().contains("--micro-batch 2"), r.getValue());
    assertEquals(0, OutputsTest.cli("plan", "--model", model.toString(), "--seq-len", "8192", "--micro-batch", "4", "--target-modules", "q_proj,v_proj",
        "--gradient-checkpointing", "--worker-memory-mb", Long.toString(plain.get("worker_peak_mb") / 2)).getKey());
  }

  /** --runs K: a worker holds K adapters and a slot's mixed pass carries K micro-batches; the driver K optimizer states. */
  @Test
  void aMultiRunJobPlansKAdaptersAndKMicroBatchesPerSlot() throws Exception {
    Path model = tmp.resolve("m");
    ModelDirectory.initModel(model, new TinyModelSpec("llama", 2, 64, 4, 2, 96, 1, 8192, false), List.of("a", "b", "c"), 1);
    ModelSkeleton base = ModelSkeleton.read(model);
    LoraModel lora = LoraModel.create(base, LoraConfig.of(8, 16, List.of("q_proj", "v_proj")));
    var one = MemoryPlan.predict(base, lora, new MemoryPlan.Shapes(16, 512, 2, 4, false));
    var four = MemoryPlan.predict(base, java.util.Collections.nCopies(4, lora), new MemoryPlan.Shapes(4, 512, 2, 4, false));
    assertEquals(one.get("worker_activations_mb"), four.get("worker_activations_mb"), "4 runs of micro-batch 4 mix into 16 rows a slot");
    assertEquals(one.get("worker_weights_mb"), four.get("worker_weights_mb"), "one base");
    var single = MemoryPlan.predict(base, lora, new MemoryPlan.Shapes(4, 512, 2, 4, false));
    assertTrue(four.get("worker_activations_mb") > 3 * single.get("worker_activations_mb"), four + " vs " + single);
    var separate = MemoryPlan.predict(base, java.util.Collections.nCopies(4, lora), new MemoryPlan.Shapes(4, 512, 2, 4, false), 1);
    assertEquals(single.get("worker_activations_mb"), separate.get("worker_activations_mb"), "--mixed-runs 1: a pass per run");
    var r = OutputsTest.cli("plan", "--model", model.toString(), "--seq-len", "512", "--micro-batch", "4", "--target-modules", "q_proj,v_proj",
        "--runs", "4");
    assertEquals(0, r.getKey(), r.getValue());
  }

  /** plan reads --target-modules as train does: names, all-linear, or one regex over the module path (once refused as "match no module"). */
  @Test
  void targetModulesAreReadAsTrainReadsThem() throws Exception {
    Path model = tmp.resolve("m");
    ModelDirectory.initModel(model, new TinyModelSpec("llama", 2, 64, 4, 2, 96, 1, 256, false), List.of("a", "b", "c"), 1);
    ModelSkeleton base = ModelSkeleton.read(model);
    int names = LoraModel.create(base, LoraConfig.ofTargetModules(8, 16, "q_proj, v_proj")).layout().size();
    int regex = LoraModel.create(base, LoraConfig.ofTargetModules(8, 16, ".*\\.(q_proj|v_proj)")).layout().size();
    int all = LoraModel.create(base, LoraConfig.ofTargetModules(8, 16, "all-linear")).layout().size();
    assertEquals(names, regex, "the regex picks the same projections as the names");
    assertTrue(all > names);
    for (String t : List.of(".*\\.(q_proj|v_proj)", "all-linear", "q_proj,v_proj")) {
      java.io.PrintStream out = System.out;
      java.io.ByteArrayOutputStream buf = new java.io.ByteArrayOutputStream();
      System.setOut(new java.io.PrintStream(buf, true));
      var r = OutputsTest.cli("plan", "--model", model.toString(), "--seq-len", "64", "--target-modules", t);
      System.setOut(out);
      assertEquals(0, r.getKey(), t + ": " + r.getValue());
      int want = t.equals("all-linear") ? all : names;
      assertTrue(buf.toString().replace(",", "").contains(want + " trainable"), t + " must train " + want + " parameters: " + buf);
    }
    IllegalArgumentException bad = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
        () -> LoraConfig.ofTargetModules(8, 16, "q_proj(["));
    assertTrue(bad.getMessage().contains("q_proj(["), bad.getMessage());
  }
}
