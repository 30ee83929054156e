package io.lorafleet.driver.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.TinyModelSpec;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** merge, average and eval, like train and prepare, never write into an output that holds results unless told to. */
class OutputsTest {
  @TempDir Path tmp;

  /** Runs the CLI; returns its exit code and what it printed on stderr. */
  static Map.Entry<Integer, String> cli(String... args) {
    PrintStream err = System.err;
    ByteArrayOutputStream buf = new ByteArrayOutputStream();
    System.setErr(new PrintStream(buf, true));
    try {
      return Map.entry(Main.execute(args), buf.toString());
    } finally {
      System.setErr(err);
    }
  }

  @Test
  void anOutputThatHoldsResultsIsRefusedUnlessOverwritten() throws Exception {
    Path model = tmp.resolve("model");
    ModelDirectory.initModel(model, new TinyModelSpec("llama", 1, 16, 2, 2, 24, 1, 32, false), List.of("a", "b", "c"), 1);
    Path adapter = tmp.resolve("adapter");
    try (LanguageModel base = LanguageModel.load(model, Device.cpu(), DataType.FLOAT32)) {
      LoraModel lora = LoraModel.create(base, LoraConfig.of(2, 4, List.of("q_proj")));
      AdapterFormat.write(adapter, lora, lora.initialParams(1), Map.of());
    }
    Path merged = tmp.resolve("merged");
    assertEquals(0, cli("merge", "--model", model.toString(), "--adapter", adapter.toString(), "--out", merged.toString()).getKey());
    byte[] first = Files.readAllBytes(merged.resolve("model.safetensors"));
    var again = cli("merge", "--model", model.toString(), "--adapter", adapter.toString(), "--out", merged.toString());
    assertEquals(2, again.getKey());
    assertTrue(again.getValue().contains("--out " + merged + " already holds") && again.getValue().contains("--overwrite"), again.getValue());
    assertEquals(0, cli("merge", "--model", model.toString(), "--adapter", adapter.toString(), "--out", merged.toString(), "--overwrite").getKey());
    assertTrue(java.util.Arrays.equals(first, Files.readAllBytes(merged.resolve("model.safetensors"))));
    // --overwrite never deletes an input
    var self = cli("merge", "--model", model.toString(), "--adapter", adapter.toString(), "--out", model.toString(), "--overwrite");
    assertEquals(2, self.getKey());
    assertTrue(self.getValue().contains("holds the input") && Files.exists(model.resolve("config.json")), self.getValue());
    Path avg = tmp.resolve("avg");
    assertEquals(0, cli("average", "--model", model.toString(), "--adapters", adapter + "," + adapter, "--out", avg.toString()).getKey());
    var avgAgain = cli("average", "--model", model.toString(), "--adapters", adapter + "," + adapter, "--out", avg.toString());
    assertEquals(2, avgAgain.getKey());
    assertTrue(avgAgain.getValue().contains("already holds adapter_config.json"), avgAgain.getValue());
    // eval is refused before it starts any Spark work
    var ev = cli("eval", "--model", model.toString(), "--data", tmp.resolve("no-data").toString(), "--out", avg.toString());
    assertEquals(2, ev.getKey());
    assertTrue(ev.getValue().contains("already holds"), ev.getValue());
  }
}
