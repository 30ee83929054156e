package io.lorafleet.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * demo --task classify through the launcher, on the model and data the build made from Maven Central
 * (all-MiniLM-L6-v2 and LanguageTool's examples), at a size that runs in a minute: all five
 * candidates are trained, evaluated on every held-out row and reported. The README's figures come
 * from the full-size run.
 */
class ClassifyDemoIT {
  @TempDir Path dir;

  @Test
  void theClassifyDemoTrainsAndReportsItsFiveCandidates() throws Exception {
    Path assets = Shell.ROOT.resolve("deploy/target/demo-classify");
    assertTrue(Files.readString(assets.resolve("NOTICE")).contains("GNU Lesser General Public License"), "the build's NOTICE names the data's licence");
    long heldOut = Files.readAllLines(assets.resolve("heldout.jsonl")).size();
    Path out = dir.resolve("demo");
    var r = Shell.ok(List.of(Fixtures.launcher(), "demo", "--task", "classify", "--train-size", "192", "--out", out.toString()), Map.of(),
        dir.resolve("demo.log"), 600);
    JsonNode report = new ObjectMapper().readTree(out.resolve("report.json").toFile());
    assertEquals(192, report.get("train_rows").asInt());
    assertEquals(heldOut, report.get("held_out_rows").asLong(), "every held-out row evaluated");
    assertEquals(List.of("pretrained, head alone", "pretrained, LoRA", "pretrained, LoRA averaged", "pretrained, LoRA + pooler", "random init, LoRA"),
        report.get("candidates").findValuesAsText("candidate"));
    for (JsonNode c : report.get("candidates")) {
      double acc = c.get("accuracy").asDouble();
      assertTrue(acc > 0 && acc < 1 && Double.isFinite(c.get("loss").asDouble()), c.toString());
    }
    assertTrue(r.output().contains("held-out accuracy (chance 50%)") && r.output().contains("ships no pooler"), r.output());
    JsonNode pooler = new ObjectMapper().readTree(out.resolve("lora-pooler/averaged/adapter_config.json").toFile());
    assertEquals("[\"pooler\",\"classifier\"]", pooler.get("modules_to_save").toString(), "the averaged adapter keeps the trained pooler");
    assertEquals("[]", new ObjectMapper().readTree(out.resolve("head/adapter/adapter_config.json").toFile()).get("target_modules").toString());
  }
}
