package io.lorafleet.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Without the PyTorch native jar (and with an empty DJL cache), lorafleet says which artifact to add. */
class NativeLibraryIT {
  @TempDir Path dir;

  @Test
  void aMissingNativeLibraryIsNamed() throws Exception {
    Files.writeString(dir.resolve("vocab.txt"), "a b c");
    Shell.ok(List.of(Fixtures.launcher(), "init-model", "--arch", "gpt2", "--layers", "1", "--hidden", "16", "--heads", "2", "--vocab-file",
        dir.resolve("vocab.txt").toString(), "--out", dir.resolve("model").toString()), Map.of(), dir.resolve("init.log"), 300);
    String cp = Arrays.stream(Files.readString(Shell.ROOT.resolve("deploy/target/launcher.classpath")).trim().split(":"))
        .filter(j -> !j.contains("pytorch-native")).collect(Collectors.joining(":"));
    Path cache = dir.resolve("empty-djl-cache");
    Files.createDirectories(cache);
    Shell.Result r = Shell.run(List.of("java", "-DENGINE_CACHE_DIR=" + cache, "-DDJL_CACHE_DIR=" + cache, "-Dai.djl.offline=true", "-cp", cp,
        "io.lorafleet.driver.cli.Main", "generate", "--model", dir.resolve("model").toString(), "--prompt", "a b"), Map.of(), dir.resolve("run.log"), 120);
    assertEquals(1, r.code(), r.output());
    assertTrue(r.output().contains("DJL's PyTorch native library could not be loaded")
        && r.output().contains("ai.djl.pytorch:pytorch-native-cpu:2.7.1:linux-x86_64"), r.output());
  }
}
