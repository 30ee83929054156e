package io.lorafleet.driver.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.TinyModelSpec;
import io.lorafleet.worker.safetensors.SafetensorsReader;
import io.lorafleet.worker.safetensors.SafetensorsWriter;
import io.lorafleet.worker.safetensors.Tensor;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Labels from the command line, as transformers' from_pretrained(num_labels=…, id2label=…): a BERT
 * saved without a head or id2label (as bert-base is) is prepared and trained for three classes with
 * --labels; the adapter records them (adapter_config.json and the model card), so eval, average and
 * merge read it with no flag, and the merged config.json carries them. Labels that contradict a head
 * the base holds, and data prepared for other labels, are refused by name before any Spark task.
 */
class LabelsIT {
  @TempDir static Path dir;
  static Path bare;
  static Path headed;
  static final List<String> WORDS = List.of("good", "bad", "fine", "movie", "plot", "actor", "was", "the", "very", "not");
  static final String LABELS = "negative,neutral,positive";

  @BeforeAll
  static void models() throws Exception {
    headed = dir.resolve("headed"); // a classifier for two classes, head included
    ModelDirectory.initModel(headed, new TinyModelSpec("bert", 2, 32, 4, 4, 64, 1, 64, false), WORDS, 3, List.of("no", "yes"));
    bare = dir.resolve("bare"); // the same body saved as BertModel: no head, no id2label
    Files.createDirectories(bare);
    for (String f : List.of("tokenizer.json", "tokenizer_config.json")) {
      Files.copy(headed.resolve(f), bare.resolve(f));
    }
    ObjectNode cfg = (ObjectNode) new ObjectMapper().readTree(headed.resolve("config.json").toFile());
    cfg.remove(List.of("id2label", "label2id", "problem_type"));
    cfg.putArray("architectures").add("BertModel");
    Files.writeString(bare.resolve("config.json"), cfg.toString());
    SafetensorsReader r = SafetensorsReader.open(headed.resolve("model.safetensors"));
    Map<String, Tensor> body = new LinkedHashMap<>();
    r.tensors().keySet().stream().filter(k -> !k.startsWith("classifier.")).forEach(k -> body.put(k, r.read(k)));
    SafetensorsWriter.write(bare.resolve("model.safetensors"), body, Map.of("format", "pt"));
    StringBuilder rows = new StringBuilder();
    String[] names = LABELS.split(",");
    for (int i = 0; i < 48; i++) {
      rows.append(String.format("{\"text\": \"the movie was %s\", \"text_pair\": \"the plot\", \"label\": \"%s\"}%n", List.of("bad", "fine", "good").get(i % 3),
          names[i % 3]));
    }
    Files.writeString(dir.resolve("three.jsonl"), rows);
  }

  /** Runs the CLI in this JVM; returns its exit code and what it wrote to stderr. */
  static Map.Entry<Integer, String> cli(String... args) {
    PrintStream err = System.err;
    ByteArrayOutputStream buf = new ByteArrayOutputStream();
    System.setErr(new PrintStream(buf, true, StandardCharsets.UTF_8));
    try {
      return Map.entry(Main.execute(args), buf.toString(StandardCharsets.UTF_8));
    } finally {
      System.setErr(err);
    }
  }

  static List<String> train(Path model, Path data, Path out, String... extra) {
    List<String> a = new java.util.ArrayList<>(List.of("train", "--model", model.toString(), "--data", data.toString(), "--out", out.toString(), "--workers",
        "1", "--steps", "4", "--global-batch", "4", "--micro-batch", "4", "--target-modules", "query,value", "--lr", "1e-2", "--checkpoint-every", "2"));
    a.addAll(List.of(extra));
    return a;
  }

  @Test
  void labelsGivenOnceAreRecordedAndReadBackWithoutAFlag() throws Exception {
    Path data = dir.resolve("data");
    assertEquals(0, cli("prepare", "--format", "classification", "--labels", LABELS, "--model", bare.toString(), "--input",
        dir.resolve("three.jsonl").toString(), "--out", data.toString(), "--val-fraction", "0.25", "--shards", "1").getKey());
    JsonNode manifest = new ObjectMapper().readTree(data.resolve("manifest.json").toFile());
    assertEquals("[\"negative\",\"neutral\",\"positive\"]", manifest.at("/labels/names").toString());

    Path run = dir.resolve("run");
    var trained = cli(train(bare, data, run, "--labels", LABELS).toArray(String[]::new));
    assertEquals(0, trained.getKey(), trained.getValue());
    JsonNode conf = new ObjectMapper().readTree(run.resolve("adapter").resolve(AdapterFormat.CONFIG).toFile());
    assertEquals("{\"0\":\"negative\",\"1\":\"neutral\",\"2\":\"positive\"}", conf.get("id2label").toString());
    assertEquals("single_label_classification", conf.get("problem_type").asText());
    var head = SafetensorsReader.open(run.resolve("adapter").resolve(AdapterFormat.WEIGHTS)).info("base_model.model.classifier.weight").orElseThrow();
    assertEquals(3, head.shape()[0], "a head of three classes");
    assertTrue(Files.readString(run.resolve("adapter").resolve("README.md")).contains("negative, neutral, positive"), "the model card names them");

    // no flag: each command reads the labels from the adapters it is given
    var eval = cli("eval", "--model", bare.toString(), "--data", data.toString(), "--run", run.toString(), "--out", dir.resolve("eval").toString());
    assertEquals(0, eval.getKey(), eval.getValue());
    assertTrue(Files.readString(dir.resolve("eval").resolve("eval.json")).contains("accuracy"));
    assertEquals(0, cli("average", "--model", bare.toString(), "--run", run.toString(), "--last", "2", "--out", dir.resolve("avg").toString()).getKey());
    Path merged = dir.resolve("merged");
    assertEquals(0, cli("merge", "--model", bare.toString(), "--adapter", run.resolve("adapter").toString(), "--out", merged.toString()).getKey());
    JsonNode mc = new ObjectMapper().readTree(merged.resolve("config.json").toFile());
    assertEquals("{\"0\":\"negative\",\"1\":\"neutral\",\"2\":\"positive\"}", mc.get("id2label").toString());
    assertEquals(3, mc.get("num_labels").asInt());
    assertEquals("[\"BertForSequenceClassification\"]", mc.get("architectures").toString());

    // the same data on a model with other labels: refused on the driver, naming both
    var other = cli(train(headed, data, dir.resolve("other")).toArray(String[]::new));
    assertEquals(2, other.getKey(), other.getValue());
    assertTrue(other.getValue().contains("was prepared for labels [negative, neutral, positive]") && other.getValue().contains("has labels [no, yes]"),
        other.getValue());
  }

  @Test
  void labelsThatContradictTheBasesHeadAreRefusedByName() {
    var r = cli("train", "--model", headed.toString(), "--data", dir.resolve("none").toString(), "--out", dir.resolve("refused").toString(),
        "--labels", LABELS, "--target-modules", "query");
    assertEquals(2, r.getKey(), r.getValue());
    assertTrue(r.getValue().contains(headed + " holds a trained head for labels [no, yes]") && r.getValue().contains("labels [negative, neutral, positive]"),
        r.getValue());
    var both = cli("train", "--model", bare.toString(), "--data", dir.resolve("none").toString(), "--out", dir.resolve("both").toString(),
        "--labels", LABELS, "--regression");
    assertEquals(2, both.getKey(), both.getValue());
    assertTrue(both.getValue().contains("give one of --labels, --num-labels and --regression"), both.getValue());
  }
}
