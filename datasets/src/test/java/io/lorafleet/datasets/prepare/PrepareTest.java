package io.lorafleet.datasets.prepare;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import io.lorafleet.datasets.arrow.Example;
import io.lorafleet.datasets.arrow.TokenLimits;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.TinyModelSpec;
import io.lorafleet.worker.tokenizer.Tokenizer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class PrepareTest {
  static SparkSession spark;
  static Path model;
  @TempDir static Path shared;
  @TempDir Path tmp;

  @BeforeAll
  static void start() throws Exception {
    spark = SparkSession.builder().master("local[2]").appName("prepare-test").config("spark.ui.enabled", "false").getOrCreate();
    model = shared.resolve("model");
    ModelDirectory.initModel(model, new TinyModelSpec("llama", 1, 8, 2, 2, 8, 1, 64, false),
        List.of("what", "is", "two", "plus", "three", "four", "five", "answer", ":", "hello", "world", "Below", "instruction", "user", "assistant",
            "system"), 1);
  }

  @AfterAll
  static void stop() {
    spark.stop();
  }

  PrepareOptions opts(List<String> in, String format, Path out, long seed) {
    return PrepareOptions.builder(in, model.toString(), out.toString()).format(RecordFormat.parse(format)).maxSeqLen(32).seed(seed).shards(3)
        .maxBadFraction(0.5).build();
  }

  @Test
  void contextTargetMaskingTokenByToken() throws Exception {
    Path in = tmp.resolve("a.jsonl");
    Files.writeString(in, "{\"context\": \"what is two plus three\", \"target\": \"five\"}\n");
    JsonNode m = Prepare.run(spark, opts(List.of(in.toString()), "context-target", tmp.resolve("out"), 1));
    List<Example> ex = Prepare.readSplit(tmp.resolve("out/train"));
    assertEquals(1, ex.size());
    try (Tokenizer tok = Tokenizer.load(model)) {
      int[] ctx = tok.encode("what is two plus three");
      int five = tok.encode("five")[0];
      int[] ids = {1, ctx[0], ctx[1], ctx[2], ctx[3], ctx[4], five, 2};
      assertArrayEquals(ids, ex.get(0).inputIds());
      assertArrayEquals(new int[] {-100, -100, -100, -100, -100, -100, five, 2}, ex.get(0).labels());
      assertEquals(tok.fingerprint(), m.get("tokenizer_fingerprint").asText());
    }
    assertEquals(2, m.at("/splits/train/target_tokens").asLong());
    // datasets' DatasetDict layout: load_from_disk(out) finds both splits
    assertEquals("{\"splits\":[\"train\",\"validation\"]}",
        new com.fasterxml.jackson.databind.ObjectMapper().readTree(tmp.resolve("out/dataset_dict.json").toFile()).toString());
    assertTrue(Files.isRegularFile(tmp.resolve("out/validation/state.json")), "each split is a save_to_disk directory, the empty one too");
    try (var files = Files.walk(tmp.resolve("out"))) {
      assertEquals(List.of(), files.filter(f -> f.getFileName().toString().endsWith(".crc")).toList(), "no checksum side files in the output");
    }
  }

  @Test
  void everyFormatAndInputType() throws Exception {
    Path dir = tmp.resolve("in");
    Files.createDirectories(dir);
    Files.writeString(dir.resolve("a.jsonl"), "{\"instruction\": \"hello\", \"input\": \"world\", \"output\": \"five\"}\n{\"instruction\": \"hello\", \"output\": \"four\"}\n");
    JsonNode m = Prepare.run(spark, opts(List.of(dir.toString()), "alpaca", tmp.resolve("alpaca"), 1));
    assertEquals(2, m.at("/splits/train/records").asLong());
    Files.writeString(tmp.resolve("t.csv"), "prompt,completion\n\"what is two\",five\nhello,world\n");
    m = Prepare.run(spark, opts(List.of(tmp.resolve("t.csv").toString()), "prompt-completion", tmp.resolve("csv"), 1));
    assertEquals(2, m.at("/splits/train/records").asLong());
    spark.createDataFrame(List.of(new TextRow("hello world five")), TextRow.class).write().parquet(tmp.resolve("p.parquet").toString());
    m = Prepare.run(spark, PrepareOptions.builder(List.of(tmp.resolve("p.parquet").toString()), model.toString(), tmp.resolve("text").toString())
        .inputType("parquet").format(RecordFormat.TEXT).maxSeqLen(32).truncation("drop").seed(1).shards(2).maxBadFraction(0.5).build());
    assertEquals(1, m.at("/splits/train/records").asLong());
    Example e = Prepare.readSplit(tmp.resolve("text/train")).get(0);
    assertEquals(e.inputIds().length - 1, java.util.Arrays.stream(e.labels()).filter(l -> l != -100).count(), "text trains on every token but BOS");
  }

  public static class TextRow implements java.io.Serializable {
    private String text;

    public TextRow() {}

    public TextRow(String t) {
      text = t;
    }

    public String getText() {
      return text;
    }

    public void setText(String t) {
      text = t;
    }
  }

  @Test
  void pretokenizedRecordsAreTakenAsGivenAndChecked() throws Exception {
    Path in = tmp.resolve("p.jsonl");
    Files.writeString(in, String.join("\n",
        "{\"input_ids\": [1, 5, 6, 7, 2], \"labels\": [-100, -100, 6, 7, 2]}",
        "{\"input_ids\": [1, 5, 6], \"labels\": [-100, 6]}",
        "{\"input_ids\": [1, 5, 999], \"labels\": [-100, 5, 999]}",
        "{\"input_ids\": [1, 5, 6], \"labels\": [-100, -100, -100]}",
        "{\"input_ids\": \"1 5 6\", \"labels\": [-100, 5, 6]}",
        ""));
    JsonNode m = Prepare.run(spark, PrepareOptions.builder(List.of(in.toString()), model.toString(), tmp.resolve("pt").toString())
        .format(RecordFormat.PRETOKENIZED).maxSeqLen(32).truncation("drop").seed(1).shards(1).maxBadFraction(0.9).build());
    assertEquals(1, m.at("/splits/train/records").asLong());
    Example e = Prepare.readSplit(tmp.resolve("pt/train")).get(0);
    assertArrayEquals(new int[] {1, 5, 6, 7, 2}, e.inputIds());
    assertArrayEquals(new int[] {-100, -100, 6, 7, 2}, e.labels());
    String q = Files.readString(tmp.resolve("pt/quarantine.jsonl"));
    for (String reason : List.of("labels has 2 entries but input_ids has 3", "input_ids[2] = 999 is outside the vocabulary", "no label carries loss",
        "field 'input_ids' must be a list of integers")) {
      assertTrue(q.contains(reason), reason + " not in " + q);
    }
  }

  @Test
  void chatTrainsAssistantTurnsOnlyThroughTheTemplate() throws Exception {
    Path chatModel = tmp.resolve("chat-model");
    Files.createDirectories(chatModel);
    for (String f : List.of("config.json", "tokenizer.json")) {
      Files.copy(model.resolve(f), chatModel.resolve(f));
    }
    var cfg = (com.fasterxml.jackson.databind.node.ObjectNode) new com.fasterxml.jackson.databind.ObjectMapper().readTree(model.resolve("tokenizer_config.json").toFile());
    cfg.put("chat_template", "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% if m['role'] == 'assistant' %}{{ eos_token }} {% endif %}"
        + "{% endfor %}{% if add_generation_prompt %}assistant : {% endif %}");
    Files.writeString(chatModel.resolve("tokenizer_config.json"), cfg.toString());
    Path in = tmp.resolve("chat.jsonl");
    Files.writeString(in, String.join("\n",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"what is two plus three\"}, {\"role\": \"assistant\", \"content\": \"five\"}]}",
        "{\"messages\": [{\"role\": \"system\", \"content\": \"answer\"}, {\"role\": \"user\", \"content\": \"hello\"}, {\"role\": \"assistant\", \"content\": \"world\"},"
            + " {\"role\": \"user\", \"content\": \"two plus two\"}, {\"role\": \"assistant\", \"content\": \"four\"}]}",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hello\"}]}",
        "{\"messages\": [{\"role\": \"wizard\", \"content\": \"hello\"}, {\"role\": \"assistant\", \"content\": \"five\"}]}",
        ""));
    JsonNode m = Prepare.run(spark, PrepareOptions.builder(List.of(in.toString()), chatModel.toString(), tmp.resolve("chat").toString())
        .format(RecordFormat.CHAT).maxSeqLen(64).truncation("drop").seed(1).shards(1).maxBadFraction(0.9).build());
    assertEquals(2, m.at("/splits/train/records").asLong());
    String q = Files.readString(tmp.resolve("chat/quarantine.jsonl"));
    assertTrue(q.contains("no assistant message to train on") && q.contains("'wizard' is not one of"), q);
    try (Tokenizer tok = Tokenizer.load(chatModel)) {
      int eos = tok.eos().orElseThrow();
      for (Example e : Prepare.readSplit(tmp.resolve("chat/train"))) {
        StringBuilder trained = new StringBuilder();
        for (int i = 0; i < e.labels().length; i++) {
          if (e.labels()[i] != -100) {
            assertEquals(e.inputIds()[i], e.labels()[i]);
            trained.append(e.labels()[i] == eos ? "<eos>" : tok.decode(new int[] {e.labels()[i]})).append(' ');
          }
        }
        String t = trained.toString().trim();
        assertTrue(t.equals("five <eos>") || t.equals("world <eos> four <eos>"), "only assistant turns (and their end marker) are trained: " + t);
        if (t.startsWith("five")) {
          assertEquals("user : what is two plus three assistant : five", tok.decode(java.util.Arrays.copyOf(e.inputIds(), e.inputIds().length - 1)));
        }
      }
    }
  }

  @Test
  void aSeparateValidationInput() throws Exception {
    Files.writeString(tmp.resolve("t.jsonl"), "{\"context\": \"what\", \"target\": \"five\"}\n{\"context\": \"is\", \"target\": \"four\"}\n");
    Files.writeString(tmp.resolve("v.jsonl"), "{\"context\": \"hello\", \"target\": \"world\"}\n");
    JsonNode m = Prepare.run(spark, PrepareOptions.builder(List.of(tmp.resolve("t.jsonl").toString()), model.toString(), tmp.resolve("sep").toString())
        .maxSeqLen(32).truncation("drop").seed(1).shards(1).maxBadFraction(0).valInputs(List.of(tmp.resolve("v.jsonl").toString())).build());
    assertEquals(2, m.at("/splits/train/records").asLong());
    assertEquals(1, m.at("/splits/validation/records").asLong());
    assertTrue(m.get("validation_inputs").get(0).asText().endsWith("v.jsonl"));
    var e = assertThrows(IllegalArgumentException.class, () -> PrepareOptions.builder(List.of("a"), "m", "o").maxSeqLen(32).truncation("drop").seed(1)
        .valFraction(0.1).shards(1).maxBadFraction(0).valInputs(List.of("v")).build());
    assertTrue(e.getMessage().contains("either --val-fraction or --val-input"));
  }

  @Test
  void packingKeepsExamplesApart() throws Exception {
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < 12; i++) {
      sb.append("{\"context\": \"what is\", \"target\": \"").append(i % 2 == 0 ? "five" : "four four").append("\"}\n");
    }
    Path in = tmp.resolve("pack.jsonl");
    Files.writeString(in, sb);
    JsonNode m = Prepare.run(spark, PrepareOptions.builder(List.of(in.toString()), model.toString(), tmp.resolve("packed").toString()).maxSeqLen(16)
        .truncation("drop").seed(1).shards(2).maxBadFraction(0).pack(true).build());
    assertEquals(12, m.at("/splits/train/records").asLong());
    long rows = m.at("/splits/train/rows").asLong();
    assertTrue(rows < 12 && rows >= 12 * 5 / 16, "examples of 5-6 tokens share 16-token rows: " + rows);
    assertTrue(m.at("/splits/train/packing_efficiency").asDouble() > 0.6);
    List<Example> packed = Prepare.readSplit(tmp.resolve("packed/train"));
    assertEquals(rows, packed.size());
    int examples = 0;
    for (Example e : packed) {
      int[] pos = e.positionIds().orElseThrow();
      assertTrue(e.inputIds().length <= 16);
      for (int i = 0; i < pos.length; i++) {
        if (pos[i] == 0) {
          examples++;
          assertEquals(1, e.inputIds()[i], "every example starts with BOS");
          assertEquals(-100, e.labels()[i], "no loss on an example's first token, so nothing is predicted across a boundary");
        } else {
          assertEquals(pos[i - 1] + 1, pos[i]);
        }
      }
    }
    assertEquals(12, examples);
  }

  /**
   * --format classification: ids as tokenizer(text, text_pair) gives them through the
   * post-processor, labels by id, by id2label name or as CSV strings; bad labels are quarantined
   * with the reason; the wrong format for the model, or --pack, is refused before any Spark work.
   */
  @Test
  void classificationRecordsForAnEncoder() throws Exception {
    Path enc = tmp.resolve("roberta");
    ModelDirectory.initModel(enc, new TinyModelSpec("roberta", 1, 8, 2, 2, 8, 1, 64, false), List.of("what", "is", "two", "five", "hello", "world"), 1,
        List.of("no", "yes"));
    Path in = tmp.resolve("c.jsonl");
    Files.writeString(in, "{\"text\": \"hello world\", \"label\": \"yes\"}\n{\"text\": \"what is\", \"text_pair\": \"two\", \"label\": 0}\n"
        + "{\"text\": \"five\", \"label\": \"maybe\"}\n{\"text\": \"five\", \"label\": 2}\n{\"text\": \"five\", \"label\": 0.5}\n{\"text\": \"five\"}\n");
    Path csv = tmp.resolve("c.csv");
    Files.writeString(csv, "text,label\nfive two,1\n");
    JsonNode m = Prepare.run(spark, PrepareOptions.builder(List.of(in.toString(), csv.toString()), enc.toString(), tmp.resolve("cls").toString())
        .format(RecordFormat.CLASSIFICATION).maxSeqLen(32).truncation("drop").seed(1).shards(1).maxBadFraction(0.9).build());
    assertEquals(3, m.at("/splits/train/records").asLong());
    List<Example> ex = Prepare.readSplit(tmp.resolve("cls/train"));
    try (Tokenizer tok = Tokenizer.load(enc)) {
      int hello = tok.encode("hello")[0];
      int world = tok.encode("world")[0];
      int[] what = tok.encode("what is");
      int two = tok.encode("two")[0];
      java.util.Map<String, Float> byIds = new java.util.HashMap<>();
      ex.forEach(e -> byIds.put(java.util.Arrays.toString(e.inputIds()), e.label().orElseThrow()));
      assertEquals(1f, byIds.get(java.util.Arrays.toString(new int[] {1, hello, world, 2})), "<s> A </s>, label by name: " + byIds);
      assertEquals(0f, byIds.get(java.util.Arrays.toString(new int[] {1, what[0], what[1], 2, 2, two, 2})), "<s> A </s></s> B </s>: " + byIds);
      assertEquals(1f, byIds.get(java.util.Arrays.toString(new int[] {1, tok.encode("five")[0], two, 2})), "a CSV string label: " + byIds);
    }
    String q = String.join("\n", Files.readAllLines(tmp.resolve("cls/quarantine.jsonl")));
    for (String reason : List.of("label 'maybe' in field 'label' is not a class of the model: expected an id in 0..1 or one of [no, yes]",
        "label 2 in field 'label' is not a class id", "label 0.5 in field 'label' is not a class id", "missing field 'label'")) {
      assertTrue(q.contains(reason), reason + " not in " + q);
    }
    // truncation as transformers' tokenizer(text, text_pair, truncation=True, max_length=6): the longer text loses tokens
    // from its end until the pair fits beside <s> </s></s> </s>
    Path longPair = tmp.resolve("long.jsonl");
    Files.writeString(longPair, "{\"text\": \"what is two five hello world\", \"text_pair\": \"two\", \"label\": 1}\n");
    Prepare.run(spark, PrepareOptions.builder(List.of(longPair.toString()), enc.toString(), tmp.resolve("cut").toString())
        .format(RecordFormat.CLASSIFICATION).maxSeqLen(6).seed(1).shards(1).maxBadFraction(0).build());
    try (Tokenizer tok = Tokenizer.load(enc)) {
      assertArrayEquals(new int[] {1, tok.encode("what")[0], 2, 2, tok.encode("two")[0], 2}, Prepare.readSplit(tmp.resolve("cut/train")).get(0).inputIds());
    }
    var wrong = assertThrows(IllegalArgumentException.class, () -> Prepare.run(spark, PrepareOptions.builder(List.of(in.toString()), enc.toString(), tmp.resolve("w").toString())
        .maxSeqLen(32).truncation("drop").seed(1).shards(1).maxBadFraction(0.9).build()));
    assertTrue(wrong.getMessage().contains("--format classification"), wrong.getMessage());
    var llama = assertThrows(IllegalArgumentException.class, () -> Prepare.run(spark, PrepareOptions.builder(List.of(in.toString()), model.toString(), tmp.resolve("w2").toString())
        .format(RecordFormat.CLASSIFICATION).maxSeqLen(32).truncation("drop").seed(1).shards(1).maxBadFraction(0.9).build()));
    assertTrue(llama.getMessage().contains("needs a sequence-classification model") && llama.getMessage().contains("llama"), llama.getMessage());
  }

  @Test
  void badRecordsGoToQuarantineWithReasons() throws Exception {
    Path dir = tmp.resolve("mixed");
    Files.createDirectories(dir);
    Files.writeString(dir.resolve("good.jsonl"), "{\"context\": \"hello\", \"target\": \"world\"}\n{\"context\": \"what\", \"target\": \"five\"}\n");
    byte[] badUtf = "{\"context\": \"a\", \"target\": \"\u00ff\"}\n".getBytes(StandardCharsets.ISO_8859_1);
    Files.write(dir.resolve("bad.jsonl"), concat(("{not json\n{\"context\": \"x\"}\n{\"context\": \"x\", \"target\": 5}\n{\"context\": \"x\", \"target\": \"\"}\n"
        + "{\"context\": \"" + "hello ".repeat(40) + "\", \"target\": \"" + "five ".repeat(40) + "\"}\n").getBytes(StandardCharsets.UTF_8), badUtf));
    JsonNode m = Prepare.run(spark, PrepareOptions.builder(List.of(dir.toString()), model.toString(), tmp.resolve("q").toString()).maxSeqLen(32)
        .seed(1).shards(2).maxBadFraction(0.9).build());
    assertEquals(2, m.at("/splits/train/records").asLong());
    List<String> q = Files.readAllLines(tmp.resolve("q/quarantine.jsonl"));
    assertEquals(6, q.size(), String.join("\n", q));
    String all = String.join("\n", q);
    for (String reason : List.of("invalid JSON", "missing field 'target'", "field 'target' must be a string", "field 'target' is empty", "too long", "invalid UTF-8")) {
      assertTrue(all.contains(reason), reason + " not in " + all);
    }
    assertTrue(all.contains("bad.jsonl\",\"line\":1"), all);
    IllegalStateException e = assertThrows(IllegalStateException.class, () -> Prepare.run(spark, PrepareOptions.builder(List.of(dir.toString()), model.toString(), tmp.resolve("q2").toString())
        .maxSeqLen(32).truncation("drop").seed(1).shards(2).build()));
    assertTrue(e.getMessage().contains("more than --max-bad-fraction 0.1"), e.getMessage());
  }

  @Test
  void anOutputThatHoldsShardsIsRefusedUnlessOverwritten() throws Exception {
    Path in = tmp.resolve("o.jsonl");
    Files.writeString(in, "{\"context\": \"hello\", \"target\": \"world\"}\n".repeat(12));
    Path out = tmp.resolve("o");
    Prepare.run(spark, opts(List.of(in.toString()), "context-target", out, 1));
    PrepareOptions four = PrepareOptions.builder(List.of(in.toString()), model.toString(), out.toString()).maxSeqLen(32).seed(1).shards(4)
        .maxBadFraction(0.5).build();
    var e = assertThrows(IllegalArgumentException.class, () -> Prepare.run(spark, four));
    assertTrue(e.getMessage().contains("already holds") && e.getMessage().contains("manifest.json") && e.getMessage().contains("--overwrite"),
        e.getMessage());
    assertEquals(3, shardFiles(out.resolve("train")), "the refused run changed nothing");
    Prepare.run(spark, four.toBuilder().overwrite(true).build());
    assertEquals(4, shardFiles(out.resolve("train")), "--overwrite replaced the output: no shard of the first run is left");
    assertEquals(12, Prepare.readSplit(out.resolve("train")).size());
  }

  static long shardFiles(Path split) throws Exception {
    try (var s = Files.list(split)) {
      return s.filter(f -> f.getFileName().toString().endsWith(".arrow")).count();
    }
  }

  @Test
  void oversizedWideAndFailingRecordsAreQuarantinedNotFatal() throws Exception {
    Path in = tmp.resolve("big.jsonl");
    String good = "{\"context\": \"hello\", \"target\": \"world\"}\n";
    // line 2 is 3 MB: with --max-record-bytes 1 MB it is cut while read and quarantined with its size
    Files.writeString(in, good + "{\"context\": \"" + "hello ".repeat(500_000) + "\", \"target\": \"five\"}\n" + good);
    JsonNode m = Prepare.run(spark, opts(List.of(in.toString()), "context-target", tmp.resolve("big"), 1).toBuilder().maxRecordBytes(1 << 20).build());
    assertEquals(2, m.at("/splits/train/records").asLong());
    List<String> q = Files.readAllLines(tmp.resolve("big/quarantine.jsonl"));
    assertEquals(1, q.size(), q.toString());
    assertTrue(q.get(0).contains("\"line\":2") && q.get(0).contains("record too large: its line spans 3000034 bytes, more than --max-record-bytes 1048576"), q.get(0));
    // 64-bit ids that do not fit in 32 bits are quarantined, never wrapped
    Path ids = tmp.resolve("ids.jsonl");
    Files.writeString(ids, "{\"input_ids\": [1, 4294967301, 3], \"labels\": [-100, 5, 3]}\n{\"input_ids\": [1, 5, 3], \"labels\": [-100, 5, 3]}\n");
    m = Prepare.run(spark, opts(List.of(ids.toString()), "pretokenized", tmp.resolve("ids"), 1));
    assertEquals(1, m.at("/splits/train/records").asLong());
    assertTrue(Files.readString(tmp.resolve("ids/quarantine.jsonl")).contains("'input_ids'[1] is 4294967301, which does not fit in 32 bits"));
    // whatever one record raises while processed becomes its quarantine reason; the job goes on
    Map<String, Object> boom = new java.util.HashMap<>() {
      @Override
      public Object get(Object k) {
        throw new IllegalStateException("boom at " + k);
      }
    };
    List<Prepare.Out> out = new java.util.ArrayList<>();
    Prepare.process(List.of(new Prepare.Raw("f.jsonl", 7, boom, null, false), new Prepare.Raw("f.jsonl", 8, Map.of("context", "hello", "target", "world"),
        null, false)).iterator(), opts(List.of("x"), "context-target", tmp.resolve("unused"), 1)).forEachRemaining(out::add);
    assertEquals(2, out.size());
    assertTrue(out.get(0).reason().startsWith("failed to process: java.lang.IllegalStateException: boom at"), out.get(0).reason());
    assertEquals(null, out.get(1).reason());
  }

  @Test
  void emptyInputsAreClearErrors() throws Exception {
    Path empty = tmp.resolve("empty.jsonl");
    Files.writeString(empty, "");
    var e = assertThrows(IllegalArgumentException.class, () -> Prepare.run(spark, opts(List.of(empty.toString()), "context-target", tmp.resolve("e1"), 1)));
    assertTrue(e.getMessage().contains(empty + " holds no records"), e.getMessage());
    Path dir = Files.createDirectories(tmp.resolve("nothing-here"));
    e = assertThrows(IllegalArgumentException.class, () -> Prepare.run(spark, opts(List.of(dir.toString()), "context-target", tmp.resolve("e2"), 1)));
    assertTrue(e.getMessage().contains("holds no input files"), e.getMessage());
  }

  @Test
  void rowsAreCheckedAgainstTheModelWhenRead() throws Exception {
    Path in = tmp.resolve("r.jsonl");
    Files.writeString(in, "{\"context\": \"what is two plus three\", \"target\": \"five\"}\n");
    Prepare.run(spark, opts(List.of(in.toString()), "context-target", tmp.resolve("r"), 1));
    var e = assertThrows(IllegalArgumentException.class, () -> split(tmp.resolve("r/train"), new TokenLimits(4, 64)).rows(0, 1));
    assertTrue(e.getMessage().startsWith("split train, shard ") && e.getMessage().contains(", row 0: input_ids[1] is ")
        && e.getMessage().contains("but the model's vocabulary holds ids 0..3"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> split(tmp.resolve("r/train"), new TokenLimits(1000, 4)).rows(0, 1));
    assertTrue(e.getMessage().contains("row 0: the row holds 8 tokens but the model's context is 4"), e.getMessage());
    assertEquals(1, split(tmp.resolve("r/train"), new TokenLimits(1000, 64)).rows(0, 1).size());
  }

  static io.lorafleet.datasets.arrow.SplitReader split(Path dir, TokenLimits limits) throws java.io.IOException {
    return io.lorafleet.datasets.arrow.SplitReader.open(dir.toString(), new org.apache.hadoop.conf.Configuration(), limits, 2);
  }

  static byte[] concat(byte[] a, byte[] b) {
    byte[] c = java.util.Arrays.copyOf(a, a.length + b.length);
    System.arraycopy(b, 0, c, a.length, b.length);
    return c;
  }

  @Test
  void sameSeedGivesByteIdenticalShardsWhereverTheInputLives() throws Exception {
    StringBuilder sb = new StringBuilder();
    String[] w = {"what", "is", "two", "plus", "three", "four", "five"};
    for (int i = 0; i < 200; i++) {
      sb.append("{\"context\": \"").append(w[i % 7]).append(' ').append(w[(i / 7) % 7]).append("\", \"target\": \"").append(w[(i / 49) % 7]).append("\"}\n");
    }
    Path in = tmp.resolve("d.jsonl");
    Files.writeString(in, sb);
    Path moved = tmp.resolve("elsewhere/d.jsonl");
    Files.createDirectories(moved.getParent());
    Files.copy(in, moved);
    for (String run : List.of("r1", "r2", "r3")) {
      Prepare.run(spark, PrepareOptions.builder(List.of((run.equals("r2") ? moved : in).toString()), model.toString(), tmp.resolve(run).toString())
          .maxSeqLen(32).truncation("drop").seed(run.equals("r3") ? 2 : 1).valFraction(0.1).shards(3).maxBadFraction(0).build());
    }
    for (String f : List.of("train/data-00000-of-00003.arrow", "train/data-00002-of-00003.arrow", "validation/data-00000-of-00003.arrow")) {
      assertArrayEquals(Files.readAllBytes(tmp.resolve("r1").resolve(f)), Files.readAllBytes(tmp.resolve("r2").resolve(f)), f);
    }
    assertTrue(!java.util.Arrays.equals(Files.readAllBytes(tmp.resolve("r1/train/data-00000-of-00003.arrow")), Files.readAllBytes(tmp.resolve("r3/train/data-00000-of-00003.arrow"))));
    int train = Prepare.readSplit(tmp.resolve("r1/train")).size();
    int val = Prepare.readSplit(tmp.resolve("r1/validation")).size();
    assertEquals(200, train + val);
    assertTrue(val > 5 && val < 40, "validation holds about 10%: " + val);
  }
}
