package io.lorafleet.driver.cli;

import io.lorafleet.datasets.prepare.Prepare;
import io.lorafleet.datasets.prepare.PrepareOptions;
import io.lorafleet.datasets.prepare.RecordFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "prepare", mixinStandardHelpOptions = true, description = "Tokenize raw records into label-masked Arrow shards on Spark.")
final class PrepareCommand implements Callable<Integer> {
  @picocli.CommandLine.Mixin LabelOptions labelOptions = new LabelOptions();
  @Option(names = "--spark-conf", description = "a Spark conf key=value (repeatable)") java.util.Map<String, String> sparkConf = new java.util.LinkedHashMap<>();
  @Option(names = "--input", required = true, split = ",", description = "files, directories or globs (any Hadoop filesystem)") List<String> inputs;
  @Option(names = "--input-type", defaultValue = "auto", description = "auto, jsonl, parquet or csv") String inputType;
  @Option(names = "--format", defaultValue = "context-target", description = "context-target, prompt-completion, alpaca, text, pretokenized, chat, or classification (text, optional text_pair, label; for roberta and deberta-v2)") String format;
  @Option(names = "--column", description = "map a logical field to a column, e.g. --column context=question") Map<String, String> columns = new LinkedHashMap<>();
  @Option(names = "--template", defaultValue = "", description = "prompt template with {field} placeholders") String template;
  @Option(names = "--model", required = true, description = "HF model directory whose tokenizer.json to use") String model;
  @Option(names = "--out", description = "output directory: Arrow shards per split, manifest.json and the quarantine", required = true) String out;
  @Option(names = "--max-seq-len", description = "longest tokenized example; longer ones are handled by --truncation", defaultValue = "512") int maxSeqLen;
  @Option(names = "--truncation", defaultValue = "truncate-context", description = "drop or truncate-context") String truncation;
  @Option(names = "--train-on-inputs", description = "put loss on the context too") boolean trainOnInputs;
  @Option(names = "--seed", description = "seed of the shuffle and of the validation split", defaultValue = "0") long seed;
  @Option(names = "--val-fraction", description = "fraction of the records held out as the validation split (0: none)", defaultValue = "0.0") double valFraction;
  @Option(names = "--val-input", split = ",", description = "a separate validation input (instead of --val-fraction)") List<String> valInputs = new java.util.ArrayList<>();
  @Option(names = "--shards", description = "Arrow shards per split", defaultValue = "8") int shards;
  @Option(names = "--max-bad-fraction", description = "fail when more than this fraction of the records is quarantined", defaultValue = "0.1") double maxBadFraction;
  @Option(names = "--pack", description = "pack several examples into each --max-seq-len row (position ids restart per example)") boolean pack;
  @Option(names = "--max-record-bytes", defaultValue = "" + PrepareOptions.DEFAULT_MAX_RECORD_BYTES,
      description = "a record (JSONL line, CSV or Parquet row) longer than this is quarantined, never held whole") int maxRecordBytes;
  @Option(names = "--overwrite", description = "replace what --out holds (otherwise an output that holds files is refused)") boolean overwrite;
  @Option(names = "--local-threads", defaultValue = "2", description = "local[N] when not under spark-submit") int threads;

  @Override
  public Integer call() throws Exception {
    PrepareOptions o = options();
    var spark = Spark.session("prepare", threads, sparkConf);
    try {
      var m = Prepare.run(spark, o, line -> io.lorafleet.driver.report.Progress.say("prepare: " + line));
      System.out.printf("prepared %d train and %d validation records (%d quarantined) into %s%n", m.at("/splits/train/records").asLong(),
          m.at("/splits/validation/records").asLong(), m.get("records_quarantined").asLong(), out);
    } finally {
      spark.stop();
    }
    return 0;
  }

  /** The options these flags describe, every one by name. */
  PrepareOptions options() {
    return PrepareOptions.builder(inputs, model, out).inputType(inputType).format(RecordFormat.parse(format)).columns(columns)
        .template(template).maxSeqLen(maxSeqLen).truncation(truncation).trainOnInputs(trainOnInputs).seed(seed).valFraction(valFraction)
        .shards(shards).maxBadFraction(maxBadFraction).pack(pack).valInputs(valInputs).maxRecordBytes(maxRecordBytes).overwrite(overwrite)
        .labels(labelOptions.labels()).build();
  }
}
