package io.lorafleet.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * An error found inside a Spark task reaches the user through the launcher as the task's own one
 * line, not as Spark's stack traces: at most 3 lines on stderr (the JVM's incubator-module notice,
 * the error, and where the full trace went), the traces in the log file.
 */
class TaskErrorsIT {
  @TempDir static Path dir;

  @BeforeAll
  static void modelAndData() throws Exception {
    Files.writeString(dir.resolve("vocab.txt"), "a b c d e f g h =");
    Shell.ok(List.of(Fixtures.launcher(), "init-model", "--arch", "llama", "--layers", "2", "--hidden", "32", "--heads", "4", "--vocab-file",
        dir.resolve("vocab.txt").toString(), "--out", dir.resolve("model").toString()), Map.of(), dir.resolve("init.log"), 300);
    StringBuilder rows = new StringBuilder();
    for (int i = 0; i < 8; i++) {
      rows.append("{\"context\": \"a b =\", \"target\": \"").append("cdefgh".charAt(i % 6)).append("\"}\n");
    }
    Files.writeString(dir.resolve("d.jsonl"), rows);
    Shell.ok(List.of(Fixtures.launcher(), "prepare", "--input", dir.resolve("d.jsonl").toString(), "--model", dir.resolve("model").toString(),
        "--out", dir.resolve("data").toString(), "--max-seq-len", "16", "--shards", "1"), Map.of(), dir.resolve("prepare.log"), 300);
  }

  /** Runs the launcher with stderr apart from stdout; returns its exit code and stderr. */
  static Map.Entry<Integer, String> run(String name, String... args) throws Exception {
    Path err = dir.resolve(name + ".err");
    Path logs = dir.resolve(name + "-logs");
    ProcessBuilder pb = new ProcessBuilder(Stream.concat(Stream.of(Fixtures.launcher()), Stream.of(args)).toList()).directory(Shell.ROOT.toFile())
        .redirectOutput(dir.resolve(name + ".out").toFile()).redirectError(err.toFile());
    pb.environment().put("LORAFLEET_LOG_DIR", logs.toString());
    Process p = pb.start();
    assertTrue(p.waitFor(300, TimeUnit.SECONDS), name + " did not finish");
    String stderr = Files.readString(err);
    assertTrue(Files.readString(logs.resolve("lorafleet.log")).contains("\tat "), "the traces went to the log file");
    return Map.entry(p.exitValue(), stderr);
  }

  @Test
  void aBadAdapterHeaderFoundInATaskIsOneLine() throws Exception {
    Path bad = dir.resolve("bad-adapter");
    Files.createDirectories(bad);
    Files.writeString(bad.resolve("adapter_config.json"), "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"target_modules\": [\"q_proj\"]}");
    String key = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
    byte[] header = ("{\"" + key + "\": {\"dtype\": \"F32\", \"shape\": [4611686018427387904, 4611686018427387904], \"data_offsets\": [0, 0]}}")
        .getBytes(StandardCharsets.UTF_8);
    ByteBuffer b = ByteBuffer.allocate(8 + header.length).order(ByteOrder.LITTLE_ENDIAN).putLong(header.length).put(header);
    Files.write(bad.resolve("adapter_model.safetensors"), b.array());
    var r = run("bad-adapter", "eval", "--model", dir.resolve("model").toString(), "--data", dir.resolve("data").toString(), "--split", "train",
        "--adapter", bad.toString(), "--out", dir.resolve("eval").toString(), "--limit", "4");
    assertNotEquals(0, r.getKey(), r.getValue());
    List<String> lines = r.getValue().lines().toList();
    assertTrue(lines.size() <= 3, "at most 3 lines on stderr:\n" + r.getValue());
    assertTrue(lines.stream().anyMatch(l -> l.startsWith("lorafleet eval: " + bad.resolve("adapter_model.safetensors")) && l.contains(key)
        && l.contains("more elements than 2^63")), r.getValue());
    assertTrue(lines.stream().anyMatch(l -> l.startsWith("lorafleet: the full trace is in ")), r.getValue());
  }

  @Test
  void aCutShortShardIsOneLineNamingTheFile() throws Exception {
    Path data = dir.resolve("data-cut");
    try (Stream<Path> files = Files.walk(dir.resolve("data"))) {
      for (Path f : files.toList()) {
        Path to = data.resolve(dir.resolve("data").relativize(f).toString());
        if (Files.isDirectory(f)) {
          Files.createDirectories(to);
        } else {
          Files.copy(f, to);
        }
      }
    }
    Path shard;
    try (Stream<Path> files = Files.list(data.resolve("train"))) {
      shard = files.filter(f -> f.toString().endsWith(".arrow")).findFirst().orElseThrow();
    }
    byte[] whole = Files.readAllBytes(shard);
    Files.write(shard, java.util.Arrays.copyOf(whole, whole.length / 2));
    Files.deleteIfExists(shard.resolveSibling(shard.getFileName() + ".index.json")); // read the shard itself
    var r = run("cut-shard", "eval", "--model", dir.resolve("model").toString(), "--data", data.toString(), "--split", "train",
        "--out", dir.resolve("eval-cut").toString(), "--limit", "4");
    assertNotEquals(0, r.getKey(), r.getValue());
    List<String> lines = r.getValue().lines().toList();
    assertTrue(lines.size() <= 3, "at most 3 lines on stderr:\n" + r.getValue());
    assertTrue(lines.stream().anyMatch(l -> l.startsWith("lorafleet eval: ") && l.contains(shard.getFileName().toString())
        && l.contains("the shard is cut short or corrupt")), r.getValue());
  }

  /** Lines of a failed run's stderr, at most 3, one of them the error. */
  static List<String> oneError(Map.Entry<Integer, String> r, String command) {
    assertNotEquals(0, r.getKey(), r.getValue());
    List<String> lines = r.getValue().lines().toList();
    assertTrue(lines.size() <= 3, "at most 3 lines on stderr:\n" + r.getValue());
    assertTrue(lines.stream().anyMatch(l -> l.startsWith("lorafleet " + command + ": ")), r.getValue());
    return lines;
  }

  /** Data prepared for one classifier's labels, trained with another's: refused on the driver, before any task, in one line. */
  @Test
  void labelsThatDoNotMatchTheModelAreRefusedBeforeAnyTask() throws Exception {
    for (String[] m : new String[][] {{"three", "negative,neutral,positive"}, {"two", "negative,positive"}}) {
      Shell.ok(List.of(Fixtures.launcher(), "init-model", "--arch", "bert", "--layers", "1", "--hidden", "16", "--heads", "2", "--labels", m[1],
          "--vocab-file", dir.resolve("vocab.txt").toString(), "--out", dir.resolve("bert-" + m[0]).toString()), Map.of(), dir.resolve(m[0] + ".log"), 300);
    }
    StringBuilder rows = new StringBuilder();
    for (int i = 0; i < 8; i++) {
      rows.append("{\"text\": \"a b c\", \"text_pair\": \"d e\", \"label\": \"").append(List.of("negative", "neutral", "positive").get(i % 3)).append("\"}\n");
    }
    Files.writeString(dir.resolve("three.jsonl"), rows);
    Shell.ok(List.of(Fixtures.launcher(), "prepare", "--format", "classification", "--input", dir.resolve("three.jsonl").toString(), "--model",
        dir.resolve("bert-three").toString(), "--out", dir.resolve("three-data").toString(), "--shards", "1"), Map.of(), dir.resolve("three-prep.log"), 300);
    var r = run("labels", "train", "--model", dir.resolve("bert-two").toString(), "--data", dir.resolve("three-data").toString(), "--out",
        dir.resolve("labels-run").toString(), "--workers", "1", "--steps", "2", "--global-batch", "2", "--micro-batch", "2", "--target-modules", "query");
    List<String> lines = oneError(r, "train");
    assertTrue(lines.stream().anyMatch(l -> l.contains("was prepared for labels [negative, neutral, positive]") && l.contains("has labels [negative, positive]")),
        r.getValue());
    assertEquals(2, r.getKey(), "a bad argument's exit code");
    assertTrue(Files.notExists(dir.resolve("labels-run").resolve("checkpoint-1")), "nothing was trained");
  }

  /** A model whose weights file was cut short after its header: named in one line, wherever it is found. */
  @Test
  void aCutShortWeightsFileIsOneLineNamingIt() throws Exception {
    Path model = dir.resolve("model-cut");
    Files.createDirectories(model);
    try (Stream<Path> files = Files.list(dir.resolve("model"))) {
      for (Path f : files.toList()) {
        Files.copy(f, model.resolve(f.getFileName()));
      }
    }
    Path weights = model.resolve("model.safetensors");
    byte[] whole = Files.readAllBytes(weights);
    Files.write(weights, java.util.Arrays.copyOf(whole, whole.length - 64));
    var r = run("cut-model", "eval", "--model", model.toString(), "--data", dir.resolve("data").toString(), "--split", "train",
        "--out", dir.resolve("eval-cut-model").toString(), "--limit", "4");
    List<String> lines = oneError(r, "eval");
    assertTrue(lines.stream().anyMatch(l -> l.contains(weights.toString())), r.getValue());
  }

  /** Data prepared without a validation split has none to evaluate: refused in one line, not a table of NaN. */
  @Test
  void anEmptySplitIsRefusedNotScoredAsNaN() throws Exception {
    var r = run("empty-split", "eval", "--model", dir.resolve("model").toString(), "--data", dir.resolve("data").toString(), "--out",
        dir.resolve("eval-empty").toString());
    assertNotEquals(0, r.getKey(), r.getValue());
    List<String> lines = r.getValue().lines().toList();
    assertTrue(lines.size() <= 3, "at most 3 lines on stderr:\n" + r.getValue());
    assertTrue(lines.stream().anyMatch(l -> l.startsWith("lorafleet eval: ") && l.contains(dir.resolve("data").resolve("validation").toString())
        && l.contains("holds no example") && l.contains("--split train")), r.getValue());
    assertTrue(!Files.exists(dir.resolve("eval-empty").resolve("eval.json")), "no eval.json of NaN");
  }
}
