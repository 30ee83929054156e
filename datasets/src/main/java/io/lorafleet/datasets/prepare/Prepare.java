package io.lorafleet.datasets.prepare;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.datasets.arrow.Example;
import io.lorafleet.datasets.arrow.ShardFormat;
import io.lorafleet.datasets.arrow.ShardWriter;
import io.lorafleet.worker.model.Batch;
import java.io.IOException;
import java.io.OutputStream;
import java.io.Serializable;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.io.LongWritable;
import org.apache.spark.api.java.JavaPairRDD;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;

/**
 * {@code lorafleet prepare}: raw records → tokenized, label-masked Arrow shards, on Spark.
 *
 * <p>Each input file is read with its line (JSONL) or row (Parquet, CSV) numbers, so every bad
 * record lands in quarantine.jsonl with its source and reason. Records get a key hashed from (seed,
 * file name, line): it decides the validation split and the shuffle order, so the same seed gives
 * byte-identical shards. Shard i holds the examples whose key is i mod n, in key order; shards are
 * written by the executors, so a split never has to fit in the driver.
 */
public final class Prepare {
  public static final String MANIFEST = "manifest.json";
  public static final String QUARANTINE = "quarantine.jsonl";
  private static final ObjectMapper JSON = new ObjectMapper();

  private Prepare() {}

  /** A record before tokenization: its source, and its fields or the reason it is unreadable. */
  record Raw(String file, long line, Map<String, Object> fields, String error, boolean validation) implements Serializable {}

  /** A processed record: an example with its shuffle key, or a quarantine entry. */
  record Out(long key, boolean val, Example example, boolean truncated, String file, long line, String reason) implements Serializable {}

  public static JsonNode run(SparkSession spark, PrepareOptions o) throws IOException {
    return run(spark, o, line -> { });
  }

  /** As {@link #run(SparkSession, PrepareOptions)}, saying what it has done as it goes (a line per stage). */
  public static JsonNode run(SparkSession spark, PrepareOptions o, java.util.function.Consumer<String> progress) throws IOException {
    JavaSparkContext jsc = JavaSparkContext.fromSparkContext(spark.sparkContext());
    Configuration hconf = jsc.hadoopConfiguration();
    List<String> files = expand(hconf, o.source().inputs());
    List<String> valFiles = o.source().valInputs().isEmpty() ? List.of() : expand(hconf, o.source().valInputs());
    if (files.isEmpty()) {
      throw new IllegalArgumentException("--input " + String.join(",", o.source().inputs()) + " holds no input files (hidden and _-prefixed files are skipped)");
    }
    String fingerprint = Tokenize.tokenizer(o.tokens().modelDir()).fingerprint();
    if (o.records().format() == RecordFormat.CHAT) {
      ChatFormat.template(Tokenize.tokenizer(o.tokens().modelDir())); // no chat_template: fail before any Spark work
    }
    ShardFormat.Columns columns = columns(o);
    Path outDir = new Path(o.split().output());
    FileSystem fs = outDir.getFileSystem(hconf);
    fs.setWriteChecksum(false); // no .crc side files beside the shards on a local filesystem
    claimOutput(fs, outDir, o.split().overwrite());
    JavaRDD<Raw> raw = null;
    for (String f : files) {
      JavaRDD<Raw> r = read(spark, jsc, f, type(o, f), false, o.source().maxRecordBytes());
      raw = raw == null ? r : raw.union(r);
    }
    for (String f : valFiles) {
      raw = raw.union(read(spark, jsc, f, type(o, f), true, o.source().maxRecordBytes()));
    }
    JavaRDD<Out> out = raw.mapPartitions(it -> process(it, o)).cache();
    long total = out.count();
    if (total == 0) {
      throw new IllegalArgumentException("--input " + String.join(",", files) + " holds no records");
    }
    ObjectNode manifest = JSON.createObjectNode();
    manifest.put("format_version", 1);
    manifest.put("tokenizer_fingerprint", fingerprint);
    ArrayNode in = manifest.putArray("inputs");
    files.forEach(in::add);
    ArrayNode vin = manifest.putArray("validation_inputs");
    valFiles.forEach(vin::add);
    manifest.set("options", JSON.valueToTree(o)); // every option, as given
    if (columns.classification()) { // what the labels were read against, which train checks on the driver before any task
      var model = Tokenize.config(o);
      ObjectNode labels = manifest.putObject("labels");
      labels.put("regression", model.regression());
      model.labelNames().forEach(labels.putArray("names")::add);
    }

    // Quarantined records are counted and written by executor tasks; only a per-reason count reaches the driver.
    JavaRDD<Out> badRdd = out.filter(x -> x.reason() != null);
    Map<String, Long> reasons = new TreeMap<>(badRdd.map(b -> b.reason().replaceAll(":.*", "")).countByValue());
    long bad = reasons.values().stream().mapToLong(Long::longValue).sum();
    manifest.put("records_read", total);
    manifest.put("records_quarantined", bad);
    progress.accept("read and tokenized " + total + " records from " + (files.size() + valFiles.size()) + " files; " + bad + " quarantined "
        + (bad == 0 ? "" : reasons.toString()));
    writeQuarantine(jsc, badRdd, new Path(outDir, QUARANTINE).toString());
    double badFraction = (double) bad / total;
    if (badFraction > o.source().maxBadFraction()) {
      throw new IllegalStateException(bad + " of " + total + " records are bad (" + String.format("%.1f%%", 100 * badFraction)
          + "), more than --max-bad-fraction " + o.source().maxBadFraction() + "; reasons: " + reasons + "; see " + new Path(outDir, QUARANTINE));
    }
    ObjectNode splits = manifest.putObject("splits");
    for (boolean val : new boolean[] {false, true}) {
      JavaRDD<Out> split = out.filter(x -> x.reason() == null && x.val() == val);
      String name = val ? "validation" : "train";
      splits.set(name, writeSplit(jsc, fs, new Path(outDir, name), split, o.split().shards(), o.tokens().pack() ? o.tokens().maxSeqLen() : 0, columns));
      progress.accept("wrote " + name + ": " + splits.get(name).path("records").asLong() + " examples in " + new Path(outDir, name));
    }
    out.unpersist();
    // what datasets' DatasetDict.save_to_disk writes at the root, so load_from_disk(out) opens both splits
    ObjectNode dict = JSON.createObjectNode();
    dict.putArray("splits").add("train").add("validation");
    writeJson(fs, new Path(outDir, "dataset_dict.json"), dict);
    Path mf = new Path(outDir, MANIFEST);
    try (OutputStream s = fs.create(mf, true)) {
      s.write(JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(manifest));
    }
    return manifest;
  }

  static String type(PrepareOptions o, String file) {
    if (!o.source().inputType().equals("auto")) {
      return o.source().inputType();
    }
    String f = file.toLowerCase();
    return f.endsWith(".parquet") ? "parquet" : f.endsWith(".csv") ? "csv" : "jsonl";
  }

  /** Files and directories (non-recursive, hidden and _-prefixed files skipped) → sorted file list. */
  static List<String> expand(Configuration conf, List<String> inputs) throws IOException {
    List<String> out = new ArrayList<>();
    for (String in : inputs) {
      Path p = new Path(in);
      FileSystem fs = p.getFileSystem(conf);
      FileStatus[] matches = fs.globStatus(p);
      if (matches == null || matches.length == 0) {
        throw new IllegalArgumentException("--input " + in + ": no such file or directory");
      }
      for (FileStatus st : matches) {
        if (st.isDirectory()) {
          for (FileStatus c : fs.listStatus(st.getPath())) {
            String n = c.getPath().getName();
            if (c.isFile() && !n.startsWith(".") && !n.startsWith("_")) {
              out.add(c.getPath().toString());
            }
          }
        } else {
          out.add(st.getPath().toString());
        }
      }
    }
    out.sort(String::compareTo);
    return out;
  }

  /**
   * @param validation records of a --val-input file, which all go to the validation split
   * @param cap records longer than this many bytes are quarantined, never held whole (JSONL lines
   *     are cut while read; CSV and Parquet rows are measured once read)
   */
  static JavaRDD<Raw> read(SparkSession spark, JavaSparkContext jsc, String file, String type, boolean validation, int cap) {
    if (type.equals("jsonl")) {
      // Raw bytes per line, so invalid UTF-8 is detected rather than silently replaced.
      org.apache.hadoop.mapred.JobConf job = new org.apache.hadoop.mapred.JobConf(jsc.hadoopConfiguration());
      job.setInt(CappedLines.CAP_KEY, cap);
      org.apache.hadoop.mapred.FileInputFormat.setInputPaths(job, file);
      JavaPairRDD<LongWritable, CappedLines.Line> lines = jsc.hadoopRDD(job, CappedLines.class, LongWritable.class, CappedLines.Line.class);
      // Hadoop reuses the record objects: copy each line out at once (an oversized one as its length only)
      return lines.map(t -> new scala.Tuple2<>(t._2().length() > cap ? null : t._2().bytes(), t._2().length()))
          .zipWithIndex()
          .map(t -> t._1()._1() == null
              ? new Raw(file, t._2() + 1, null, "record too large: its line spans " + t._1()._2() + " bytes, more than --max-record-bytes " + cap, validation)
              : parseJson(file, t._2() + 1, t._1()._1(), validation));
    }
    var reader = spark.read();
    var df = type.equals("csv") ? reader.option("header", "true").option("multiLine", "true").option("escape", "\"").csv(file) : reader.parquet(file);
    return rows(df, file, validation, cap);
  }

  /** A table's rows as records, numbered from 1 in its order; one longer than {@code cap} is quarantined. */
  static JavaRDD<Raw> rows(Dataset<Row> df, String file, boolean validation, int cap) {
    String[] cols = df.columns();
    return df.javaRDD().zipWithIndex().map(t -> {
      Row r = t._1();
      Map<String, Object> m = new LinkedHashMap<>();
      long size = 0;
      for (int i = 0; i < cols.length; i++) {
        m.put(cols[i], r.get(i));
        size += String.valueOf(r.get(i)).length();
      }
      if (size > cap) {
        return new Raw(file, t._2() + 1, null, "record too large: about " + size + " bytes, more than --max-record-bytes " + cap, validation);
      }
      return new Raw(file, t._2() + 1, m, null, validation);
    });
  }

  /** What {@link #transform} makes: the examples (input_ids, labels, split) and the quarantine (row, reason). */
  public record Transformed(Dataset<Row> examples, Dataset<Row> quarantine) {}

  /**
   * {@code prepare} as a transformation, for one's own Spark job: raw records (one per row, with the
   * columns the format names, or as {@code o.records().columns()} maps them) become tokenized, label-masked
   * examples, {@code input_ids} and {@code labels} (arrays of int, -100 where no loss falls) and
   * {@code split} (train or validation, by {@code o.split().valFraction()}), in the input's order; records
   * that fail become the quarantine, {@code row} (1-based) and {@code reason}. Nothing is written:
   * {@code o}'s inputs, output and shards are not used. Lazy, as Spark transformations are.
   */
  public static Transformed transform(Dataset<Row> records, PrepareOptions o) {
    Tokenize.tokenizer(o.tokens().modelDir()); // a missing or unreadable tokenizer fails here, on the driver
    if (o.records().format() == RecordFormat.CLASSIFICATION) {
      throw new IllegalArgumentException("--format classification writes a label per row, which this transformer's input_ids/labels schema "
          + "has no column for; use lorafleet prepare");
    }
    if (o.records().format() == RecordFormat.CHAT) {
      ChatFormat.template(Tokenize.tokenizer(o.tokens().modelDir()));
    }
    JavaRDD<Out> out = rows(records, "dataset", false, o.source().maxRecordBytes()).mapPartitions(it -> process(it, o));
    var spark = records.sparkSession();
    var ints = org.apache.spark.sql.types.DataTypes.createArrayType(org.apache.spark.sql.types.DataTypes.IntegerType, false);
    var exampleSchema = new org.apache.spark.sql.types.StructType().add("input_ids", ints, false).add("labels", ints, false)
        .add("split", org.apache.spark.sql.types.DataTypes.StringType, false);
    var quarantineSchema = new org.apache.spark.sql.types.StructType().add("row", org.apache.spark.sql.types.DataTypes.LongType, false)
        .add("reason", org.apache.spark.sql.types.DataTypes.StringType, false);
    JavaRDD<Row> good = out.filter(x -> x.reason() == null).map(x -> org.apache.spark.sql.RowFactory.create(x.example().inputIds(),
        x.example().labels(), x.val() ? "validation" : "train"));
    JavaRDD<Row> bad = out.filter(x -> x.reason() != null).map(x -> org.apache.spark.sql.RowFactory.create(x.line(), x.reason()));
    return new Transformed(spark.createDataFrame(good, exampleSchema), spark.createDataFrame(bad, quarantineSchema));
  }

  static Raw parseJson(String file, long line, byte[] bytes, boolean validation) {
    String s;
    try {
      s = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT).onUnmappableCharacter(CodingErrorAction.REPORT)
          .decode(java.nio.ByteBuffer.wrap(bytes)).toString();
    } catch (CharacterCodingException e) {
      return new Raw(file, line, null, "invalid UTF-8", validation);
    }
    if (s.isBlank()) {
      return new Raw(file, line, null, "empty line", validation);
    }
    try {
      JsonNode n = JSON.readTree(s);
      if (!n.isObject()) {
        return new Raw(file, line, null, "invalid JSON: expected an object but found " + n.getNodeType().name().toLowerCase(), validation);
      }
      Map<String, Object> m = new LinkedHashMap<>();
      n.fields().forEachRemaining(e -> m.put(e.getKey(), e.getValue().isTextual() ? e.getValue().asText() : e.getValue().isNull() ? null : e.getValue()));
      return new Raw(file, line, m, null, validation);
    } catch (IOException e) {
      return new Raw(file, line, null, "invalid JSON: " + e.getMessage().split("\n")[0], validation);
    }
  }

  static Iterator<Out> process(Iterator<Raw> it, PrepareOptions o) {
    var tok = Tokenize.tokenizer(o.tokens().modelDir());
    int vocab = Tokenize.vocabSize(o.tokens().modelDir());
    List<Out> out = new ArrayList<>();
    while (it.hasNext()) {
      Raw r = it.next();
      // keyed by file name, not full path: the same inputs shuffle the same wherever they live
      long key = hash(o.split().seed(), new org.apache.hadoop.fs.Path(r.file()).getName(), r.line());
      boolean val = r.validation() || (key >>> 11) * 0x1.0p-53 < o.split().valFraction();
      if (r.error() != null) {
        out.add(new Out(key, val, null, false, r.file(), r.line(), r.error()));
        continue;
      }
      try {
        Tokenize.Result t = Tokenize.record(tok, r.fields(), o, vocab);
        out.add(new Out(key, val, t.example(), t.truncated(), r.file(), r.line(), null));
      } catch (RecordFormat.BadRecord e) {
        out.add(new Out(key, val, null, false, r.file(), r.line(), e.getMessage()));
      } catch (RuntimeException | StackOverflowError e) {
        // one record must never stop the job: whatever it raised becomes its quarantine reason
        out.add(new Out(key, val, null, false, r.file(), r.line(), "failed to process: " + e));
      }
    }
    return out.iterator();
  }

  /** SplitMix64 over the seed and FNV-1a of "file:line": stable across JVMs and runs. */
  static long hash(long seed, String file, long line) {
    long h = 0xcbf29ce484222325L;
    for (byte b : (file + ":" + line).getBytes(StandardCharsets.UTF_8)) {
      h = (h ^ (b & 0xff)) * 0x100000001b3L;
    }
    long z = h + seed * 0x9e3779b97f4a7c15L;
    z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
    z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
    return z ^ (z >>> 31);
  }

  /** The shuffle order: by key, ties broken by source position. */
  record Order(long key, String file, long line) implements Comparable<Order>, Serializable {
    static Order of(Out o) {
      return new Order(o.key(), o.file(), o.line());
    }

    @Override
    public int compareTo(Order b) {
      return key != b.key ? Long.compare(key, b.key) : !file.equals(b.file) ? file.compareTo(b.file) : Long.compare(line, b.line);
    }
  }

  /** An example goes to shard (shuffle key mod n): one shuffle places and orders every example. */
  static final class ShardPartitioner extends org.apache.spark.Partitioner {
    private final int shards;

    ShardPartitioner(int shards) {
      this.shards = shards;
    }

    @Override
    public int numPartitions() {
      return shards;
    }

    @Override
    public int getPartition(Object order) {
      return (int) Long.remainderUnsigned(((Order) order).key(), shards);
    }
  }

  /** What a shard holds, counted as its rows stream out; shards' tallies add up to the split's. */
  static final class ShardTally implements Serializable {
    long rows;
    long tokens;
    long targetTokens;
    long truncated;
    final TreeMap<Integer, Long> hist = new TreeMap<>(); // rows by length, in power-of-two buckets

    void addRow(Out o) {
      Example e = o.example();
      rows++;
      tokens += e.inputIds().length;
      for (int l : e.labels()) {
        targetTokens += l == Batch.IGNORE ? 0 : 1;
      }
      truncated += o.truncated() ? 1 : 0;
      hist.merge(Integer.highestOneBit(Math.max(1, e.inputIds().length - 1)) * 2, 1L, Long::sum);
    }

    ShardTally plus(ShardTally t) {
      rows += t.rows;
      tokens += t.tokens;
      targetTokens += t.targetTokens;
      truncated += t.truncated;
      t.hist.forEach((k, v) -> hist.merge(k, v, Long::sum));
      return this;
    }
  }

  /**
   * Places every example in shard (key mod n), ordered by key within it, and writes shard i in the
   * task for partition i, streaming, under a temporary name that is then renamed: nothing of a
   * split passes through the driver, and a shard appears whole or not at all. Keys are uniform
   * hashes, so shard sizes differ only by chance (about ±√(size) rows).
   *
   * @param packLen 0 for one example per row, else rows packed up to this many tokens (within a shard)
   */
  /**
   * The shards' columns for these options and model: a class id or a value per row for an encoder
   * (which --format classification alone prepares for), token labels (packed or not) for a causal LM.
   */
  static ShardFormat.Columns columns(PrepareOptions o) {
    var model = Tokenize.config(o);
    boolean classify = o.records().format() == RecordFormat.CLASSIFICATION;
    if (classify != model.arch().encoder()) {
      throw new IllegalArgumentException(classify
          ? "--format classification needs a sequence-classification model (" + io.lorafleet.worker.model.Architecture.encoderModelTypes() + ") but " + o.tokens().modelDir() + " is " + model.modelType()
          : "--model " + o.tokens().modelDir() + " is a " + model.modelType() + " sequence classifier: prepare its data with --format classification");
    }
    if (classify && o.tokens().pack()) {
      throw new IllegalArgumentException("--pack does not apply to --format classification: each row is one labelled sequence");
    }
    return classify ? (model.regression() ? ShardFormat.Columns.VALUES : ShardFormat.Columns.CLASSES)
        : o.tokens().pack() ? ShardFormat.Columns.PACKED : ShardFormat.Columns.TOKENS;
  }

  static ObjectNode writeSplit(JavaSparkContext jsc, FileSystem fs, Path dir, JavaRDD<Out> split, int shards, int packLen, ShardFormat.Columns columns)
      throws IOException {
    fs.mkdirs(dir);
    long examples = split.count();
    int n = (int) Math.max(1, Math.min(shards, examples));
    JavaPairRDD<Order, Out> byShard = split.mapToPair(o -> new scala.Tuple2<>(Order.of(o), o))
        .repartitionAndSortWithinPartitions(new ShardPartitioner(n));
    var conf = jsc.broadcast(new org.apache.spark.util.SerializableConfiguration(jsc.hadoopConfiguration()));
    String dirName = dir.toString();
    ShardTally total = byShard.mapPartitionsWithIndex((i, it) -> {
      FileSystem efs = new Path(dirName).getFileSystem(conf.value().value());
      efs.setWriteChecksum(false);
      return List.of(writeShard(efs, new Path(dirName), i, n, it, packLen, columns)).iterator();
    }, true).collect().stream().reduce(new ShardTally(), ShardTally::plus);
    conf.destroy();
    ArrayNode files = JSON.createArrayNode();
    for (int i = 0; i < n; i++) {
      files.addObject().put("filename", ShardFormat.shardName(i, n));
    }
    ObjectNode state = JSON.createObjectNode();
    state.set("_data_files", files);
    state.putNull("_fingerprint");
    state.putNull("_format_columns");
    state.putNull("_format_kwargs");
    state.putNull("_format_type");
    state.put("_output_all_columns", false);
    state.putNull("_split");
    writeJson(fs, new Path(dir, "state.json"), state);
    ObjectNode info = (ObjectNode) JSON.readTree(ShardFormat.schema(columns).getCustomMetadata().get("huggingface")).get("info");
    writeJson(fs, new Path(dir, "dataset_info.json"), info);
    ObjectNode stats = JSON.createObjectNode();
    stats.put("records", examples);
    stats.put("rows", total.rows);
    if (packLen > 0) {
      stats.put("packed_to", packLen);
      stats.put("packing_efficiency", total.rows == 0 ? 0 : (double) total.tokens / (total.rows * packLen));
    }
    stats.put("tokens", total.tokens);
    stats.put("target_tokens", total.targetTokens);
    stats.put("truncated", total.truncated);
    stats.put("shards", n);
    ObjectNode h = stats.putObject("length_histogram");
    total.hist.forEach((k, v) -> h.put("<=" + k, v));
    return stats;
  }

  static ShardTally writeShard(FileSystem fs, Path dir, int shard, int n, Iterator<scala.Tuple2<Order, Out>> it, int packLen, ShardFormat.Columns columns)
      throws IOException {
    ShardTally tally = new ShardTally();
    Iterator<Out> records = lazily(it).map(scala.Tuple2::_2).iterator();
    Iterator<Out> rows = packLen > 0 ? Packing.pack(records, packLen) : records;
    Iterator<Example> examples = lazily(rows).peek(tally::addRow).map(Out::example).iterator();
    String name = ShardFormat.shardName(shard, n);
    org.apache.spark.TaskContext task = org.apache.spark.TaskContext.get();
    Path tmp = new Path(dir, "." + name + "." + (task == null ? 0 : task.taskAttemptId()) + ".tmp");
    io.lorafleet.datasets.arrow.ShardIndex index;
    try (OutputStream s = fs.create(tmp, true)) {
      index = ShardWriter.write(s, examples, columns);
    }
    writeJson(fs, new Path(dir, name + io.lorafleet.datasets.arrow.ShardIndex.SUFFIX), index.toJson());
    Path fin = new Path(dir, name);
    fs.delete(fin, false);
    if (!fs.rename(tmp, fin)) {
      throw new IOException("cannot rename " + tmp + " to " + fin);
    }
    return tally;
  }

  /** A stream that pulls from {@code it} one element at a time, as the shard writer asks. */
  private static <T> java.util.stream.Stream<T> lazily(Iterator<T> it) {
    return java.util.stream.StreamSupport.stream(java.util.Spliterators.spliteratorUnknownSize(it, java.util.Spliterator.ORDERED), false);
  }

  static void writeJson(FileSystem fs, Path p, JsonNode n) throws IOException {
    try (OutputStream s = fs.create(p, true)) {
      s.write(JSON.copy().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsBytes(n));
    }
  }

  /**
   * An output that already holds files is refused (a second prepare into it would leave the first
   * one's shards beside its own), unless {@code overwrite}, which deletes it first.
   */
  static void claimOutput(FileSystem fs, Path out, boolean overwrite) throws IOException {
    if (!fs.exists(out)) {
      fs.mkdirs(out);
      return;
    }
    FileStatus[] held = fs.listStatus(out);
    if (held.length == 0) {
      return;
    }
    if (!overwrite) {
      List<String> names = new ArrayList<>();
      for (FileStatus st : held) {
        names.add(st.getPath().getName());
      }
      names.sort(null);
      throw new IllegalArgumentException("--out " + out + " already holds " + String.join(", ", names.subList(0, Math.min(6, names.size())))
          + (names.size() > 6 ? ", ..." : "") + "; pass --overwrite to replace it, or choose another --out");
    }
    fs.delete(out, true);
    fs.mkdirs(out);
  }

  /** quarantine.jsonl, sorted by file and line, streamed by one executor task (never collected to the driver). */
  static void writeQuarantine(JavaSparkContext jsc, JavaRDD<Out> bad, String file) {
    var conf = jsc.broadcast(new org.apache.spark.util.SerializableConfiguration(jsc.hadoopConfiguration()));
    bad.sortBy(b -> new Order(0, b.file(), b.line()), true, 1).foreachPartition(it -> {
      Path p = new Path(file);
      FileSystem fs = p.getFileSystem(conf.value().value());
      fs.setWriteChecksum(false);
      try (OutputStream s = fs.create(p, true)) {
        while (it.hasNext()) {
          Out b = it.next();
          ObjectNode n = JSON.createObjectNode();
          n.put("file", b.file());
          n.put("line", b.line());
          n.put("reason", b.reason());
          s.write((JSON.writeValueAsString(n) + "\n").getBytes(StandardCharsets.UTF_8));
        }
      }
    });
    conf.destroy();
  }

  /** Loads a prepared split's examples in shard order (small splits: tests and tools; training streams them with SplitReader). */
  public static List<Example> readSplit(java.nio.file.Path dir) throws IOException {
    List<Example> out = new ArrayList<>();
    try (var s = java.nio.file.Files.list(dir)) {
      for (java.nio.file.Path f : s.filter(x -> x.getFileName().toString().endsWith(".arrow")).sorted().toList()) {
        out.addAll(io.lorafleet.datasets.arrow.ShardReader.read(f));
      }
    }
    return out;
  }

}
