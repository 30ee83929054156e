package io.lorafleet.driver.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lorafleet.datasets.prepare.PrepareOptions;
import io.lorafleet.driver.train.TrainConfig;
import io.lorafleet.worker.lora.AdaloraMethod;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.DoraMethod;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.lora.VeraMethod;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.ModelSkeleton;
import io.lorafleet.worker.model.TinyModelSpec;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/** What `lorafleet train` and `prepare` make of their flags: the job they build, before any Spark work. */
class TrainCommandTest {
  @TempDir Path tmp;

  @Test
  void theFlagsDefaultsAreTheBuildersDefaults() {
    TrainConfig cfg = JobFileTest.parsed("train", "--model", "m", "--data", "d", "--out", "o").config();
    assertEquals(TrainConfig.builder("m", "d", "o").build(), cfg, "a default written twice would differ here");
  }

  /** The model's own dropouts are on by default, as transformers trains; --model-dropout off is eval mode's model; anything else is refused by name. */
  @Test
  void modelDropoutIsOnUnlessTurnedOff() {
    assertTrue(JobFileTest.parsed("train", "--model", "m", "--data", "d", "--out", "o").config().compute().modelDropout());
    assertFalse(JobFileTest.parsed("train", "--model", "m", "--data", "d", "--out", "o", "--model-dropout", "off").config().compute().modelDropout());
    var e = assertThrows(IllegalArgumentException.class,
        () -> JobFileTest.parsed("train", "--model", "m", "--data", "d", "--out", "o", "--model-dropout", "false").config());
    assertEquals("--model-dropout must be on or off but found 'false'", e.getMessage());
  }

  @Test
  void prepareFlagsDefaultsAreTheBuildersDefaults() {
    CommandLine cl = new CommandLine(new Main());
    cl.parseArgs("prepare", "--input", "a.jsonl", "--model", "m", "--out", "o");
    PrepareCommand p = cl.getSubcommands().get("prepare").getCommand();
    assertEquals(PrepareOptions.builder(List.of("a.jsonl"), "m", "o").build(), p.options(), "a default written twice would differ here");
  }

  /**
   * --init-adapter with no method flags trains the adapter's own method and settings: a VeRA or
   * AdaLoRA adapter was once refused as contradicting "--peft-type LORA", because the method was
   * read from the flag before the adapter's config was adopted.
   */
  @Test
  void anInitAdapterOfEveryMethodTrainsAsItself() throws Exception {
    Path model = tmp.resolve("m");
    ModelDirectory.initModel(model, new TinyModelSpec("llama", 2, 32, 4, 2, 64, 1, 64, false), List.of("a", "b", "c"), 1);
    ModelSkeleton base = ModelSkeleton.read(model);
    LoraConfig lora = LoraConfig.ofTargetModules(4, 8, "q_proj,v_proj");
    Map<String, LoraConfig> methods = Map.of(
        "lora", lora.withRslora(true).withPatterns(Map.of("v_proj", 2), Map.of()),
        "dora", lora.withMethod(DoraMethod.INSTANCE),
        "vera", LoraConfig.ofTargetModules(16, 8, "q_proj,v_proj").withMethod(new VeraMethod(0.25, 11)),
        "adalora", lora.withMethod(AdaloraMethod.of(6, 3, 1, 1, 2, 0.8, 0.9, 0.3, 20)));
    for (var m : methods.entrySet()) {
      Path adapter = tmp.resolve(m.getKey());
      LoraModel trained = LoraModel.create(base, m.getValue());
      AdapterFormat.write(adapter, trained, new float[trained.layout().size()], Map.of());
      TrainConfig cfg = JobFileTest.parsed("train", "--model", model.toString(), "--data", "d", "--out", "o", "--init-adapter", adapter.toString())
          .config();
      LoraConfig written = AdapterFormat.readConfig(adapter);
      assertEquals(written.peftType(), cfg.tuner().peftType(), m.getKey());
      assertEquals(written.withBaseModel(model.toString()), cfg.lora(), m.getKey() + ": the adapter's whole config, method settings included");
    }
    // a flag given still wins over the adapter (and Trainer refuses it by name when it contradicts)
    TrainConfig rank = JobFileTest.parsed("train", "--model", model.toString(), "--data", "d", "--out", "o", "--init-adapter",
        tmp.resolve("vera").toString(), "--r", "8").config();
    assertEquals(8, rank.tuner().r());
    assertTrue(rank.tuner().method() instanceof io.lorafleet.worker.lora.VeraMethod);
  }
}
