package io.lorafleet.driver.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

/**
 * bench-step's settings are checked before anything runs, and a tiny encoder and a tiny decoder
 * each run one timed step of LoRA against full fine-tuning (what the README's benchmark tables
 * run at base size). Timings are printed, never judged.
 */
class BenchStepCommandTest {
  @Test
  void aTinyBertAndATinyLlamaRunAndAnEncoderRefusesQuantization() {
    for (String arch : new String[] {"bert", "distilbert", "llama"}) {
      String targets = switch (arch) {
        case "bert" -> "query,value";
        case "distilbert" -> "q_lin,v_lin";
        default -> "q_proj,v_proj";
      };
      assertEquals(0, Main.execute("bench-step", "--arch", arch, "--hidden", "64", "--layers", "1", "--intermediate", "128", "--vocab", "64",
          "--seq-len", "8", "--batch", "2", "--r", "2", "--target-modules", targets, "--warmup", "1", "--steps", "1"), arch);
    }
    assertEquals(2, Main.execute("bench-step", "--arch", "bert", "--quantize", "nf4", "--hidden", "64", "--layers", "1"), "refused by name");
    assertEquals(2, Main.execute("bench-step", "--arch", "gpt2"), "an architecture bench-step does not build");
  }
}
