package io.lorafleet.driver.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;
import picocli.CommandLine.Model.OptionSpec;

class HelpTextTest {
  @Test
  void everyOptionOfEveryCommandIsDescribedAndShowsItsDefault() {
    CommandLine cl = Main.commandLine();
    List<String> undescribed = new ArrayList<>();
    cl.getSubcommands().forEach((name, sub) -> {
      for (OptionSpec o : sub.getCommandSpec().options()) {
        if (!o.usageHelp() && !o.versionHelp() && String.join("", o.description()).isBlank()) {
          undescribed.add(name + " " + o.longestName());
        }
      }
    });
    assertEquals(List.of(), undescribed, "options without a description");
    String help = cl.getSubcommands().get("train").getUsageMessage();
    assertTrue(help.contains("Default: 1e-3") && help.contains("Default: cosine"), help);
  }

  @Test
  void enumeratedOptionsAreRefusedBeforeAnySparkWork() {
    java.io.PrintStream old = System.err;
    java.io.ByteArrayOutputStream err = new java.io.ByteArrayOutputStream();
    System.setErr(new java.io.PrintStream(err, true));
    try {
      for (String[] bad : new String[][] {{"--schedule", "wsd"}, {"--optimizer", "lion"}, {"--average-mode", "mean"}, {"--grad-transport", "int8"},
          {"--peft-type", "ia3"}, {"--quantize", "int8"}}) {
        assertEquals(2, Main.execute("train", "--model", "m", "--data", "d", "--out", "o", bad[0], bad[1]), String.join(" ", bad));
      }
    } finally {
      System.setErr(old);
    }
    String said = err.toString();
    for (String want : new String[] {"lr schedule must be one of linear, cosine, cosine_with_min_lr, constant, constant_with_warmup, warmup_stable_merge but found 'wsd'", "--optimizer must be adamw or sgd but found 'lion'",
        "--average-mode must be factor, cat or svd but found 'mean'", "--grad-transport must be fp32, bf16 or fp16 but found 'int8'",
        "--peft-type must be ", "lora, dora, vera or adalora but found 'ia3'", "--quantize must be none or nf4 but found 'int8'"}) {
      assertTrue(said.contains(want), said);
    }
  }
}
