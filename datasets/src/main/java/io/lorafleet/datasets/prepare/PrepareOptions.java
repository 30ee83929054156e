package io.lorafleet.datasets.prepare;

import java.io.Serializable;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * Options of {@code lorafleet prepare}, as four named groups: what is read, how a record becomes an
 * example, how it is tokenized, and where the splits go. Make one with {@link #builder}: the inputs,
 * the model and the output are required, and every other option's default is written once, here
 * (the same as the CLI's).
 *
 * @param source the inputs and how bad records are tolerated
 * @param records how a record becomes an example
 * @param tokens the tokenizer and the length of a row
 * @param split where the shards go and how the validation split is drawn
 */
public record PrepareOptions(Source source, Records records, Tokens tokens, Split split) implements Serializable {

  /** The default of --max-record-bytes: a record longer than this is quarantined, never held whole. */
  public static final int DEFAULT_MAX_RECORD_BYTES = 16 << 20;

  /**
   * @param inputs files, directories or globs (any Hadoop filesystem)
   * @param inputType auto, jsonl, parquet or csv
   * @param valInputs a separate validation input (empty: none)
   * @param maxRecordBytes a record longer than this is quarantined
   * @param maxBadFraction the run fails when more than this fraction of the records is quarantined
   */
  public record Source(List<String> inputs, String inputType, List<String> valInputs, int maxRecordBytes, double maxBadFraction)
      implements Serializable {
    public Source {
      if (inputs.isEmpty()) {
        throw new IllegalArgumentException("--input must name at least one file or directory");
      }
      if (!List.of("auto", "jsonl", "parquet", "csv").contains(inputType)) {
        throw new IllegalArgumentException("--input-type must be auto, jsonl, parquet or csv but found '" + inputType + "'");
      }
      if (maxBadFraction < 0 || maxBadFraction > 1) {
        throw new IllegalArgumentException("--max-bad-fraction must be in [0, 1] but found " + maxBadFraction);
      }
      if (maxRecordBytes <= 0) {
        throw new IllegalArgumentException("--max-record-bytes must be > 0 but found " + maxRecordBytes);
      }
      inputs = List.copyOf(inputs);
      valInputs = List.copyOf(valInputs);
    }
  }

  /**
   * @param columns the format's logical fields (context, target, prompt, completion, instruction,
   *     input, output, text) mapped to the input's column names
   * @param template a prompt template with {field} placeholders ("" for the format's own)
   * @param trainOnInputs put loss on the context too
   * @param labels a classifier's labels, which the records' label field names, instead of the model's config.json's
   */
  public record Records(RecordFormat format, Map<String, String> columns, String template, boolean trainOnInputs,
      io.lorafleet.worker.model.Labels labels) implements Serializable {
    public Records {
      columns = Map.copyOf(columns);
      template = template == null ? "" : template;
    }

    /** The user's prompt template ("" when none was given). */
    public Optional<String> templateText() {
      return template.isEmpty() ? Optional.empty() : Optional.of(template);
    }

    /** The input's column for a logical field. */
    public String column(String logical) {
      return columns.getOrDefault(logical, logical);
    }
  }

  /**
   * @param modelDir the HF model directory whose tokenizer.json is used
   * @param maxSeqLen the longest tokenized example (or packed row)
   * @param truncation drop or truncate-context
   * @param pack pack several examples into each row (position ids restart per example)
   */
  public record Tokens(String modelDir, int maxSeqLen, String truncation, boolean pack) implements Serializable {
    public Tokens {
      if (maxSeqLen < 2) {
        throw new IllegalArgumentException("--max-seq-len must be >= 2 but found " + maxSeqLen);
      }
      if (!List.of("drop", "truncate-context").contains(truncation)) {
        throw new IllegalArgumentException("--truncation must be drop or truncate-context but found '" + truncation + "'");
      }
    }
  }

  /**
   * @param output the output directory
   * @param shards Arrow shards per split
   * @param valFraction the fraction of the records held out as the validation split
   * @param seed the seed of the shuffle and of the validation split
   * @param overwrite replace what the output holds
   */
  public record Split(String output, int shards, double valFraction, long seed, boolean overwrite) implements Serializable {
    public Split {
      if (valFraction < 0 || valFraction >= 1) {
        throw new IllegalArgumentException("--val-fraction must be in [0, 1) but found " + valFraction);
      }
      if (shards <= 0) {
        throw new IllegalArgumentException("--shards must be > 0 but found " + shards);
      }
    }
  }

  public PrepareOptions {
    if (!source.valInputs().isEmpty() && split.valFraction() > 0) {
      throw new IllegalArgumentException("give either --val-fraction or --val-input, not both");
    }
  }

  /** Options reading {@code inputs} with {@code modelDir}'s tokenizer into {@code output}, every other option at its default. */
  public static Builder builder(List<String> inputs, String modelDir, String output) {
    return new Builder(inputs, modelDir, output);
  }

  /** A builder holding these options: set what differs, then {@link Builder#build()}. */
  public Builder toBuilder() {
    return new Builder(this);
  }

  /** Every option by name; the field initializers are the defaults, the same as the CLI's. */
  public static final class Builder {
    private List<String> inputs;
    private String inputType = "auto";
    private List<String> valInputs = List.of();
    private int maxRecordBytes = DEFAULT_MAX_RECORD_BYTES;
    private double maxBadFraction = 0.1;
    private RecordFormat format = RecordFormat.CONTEXT_TARGET;
    private Map<String, String> columns = Map.of();
    private String template = "";
    private boolean trainOnInputs = false;
    private io.lorafleet.worker.model.Labels labels = io.lorafleet.worker.model.Labels.FROM_CONFIG;
    private String modelDir;
    private int maxSeqLen = 512;
    private String truncation = "truncate-context";
    private boolean pack = false;
    private String output;
    private int shards = 8;
    private double valFraction = 0;
    private long seed = 0;
    private boolean overwrite = false;

    private Builder(List<String> inputs, String modelDir, String output) {
      this.inputs = inputs;
      this.modelDir = modelDir;
      this.output = output;
    }

    private Builder(PrepareOptions o) {
      this(o.source.inputs(), o.tokens.modelDir(), o.split.output());
      inputType = o.source.inputType();
      valInputs = o.source.valInputs();
      maxRecordBytes = o.source.maxRecordBytes();
      maxBadFraction = o.source.maxBadFraction();
      format = o.records.format();
      columns = o.records.columns();
      template = o.records.template();
      trainOnInputs = o.records.trainOnInputs();
      labels = o.records.labels();
      maxSeqLen = o.tokens.maxSeqLen();
      truncation = o.tokens.truncation();
      pack = o.tokens.pack();
      shards = o.split.shards();
      valFraction = o.split.valFraction();
      seed = o.split.seed();
      overwrite = o.split.overwrite();
    }

    public Builder inputs(List<String> v) {
      inputs = v;
      return this;
    }

    public Builder inputType(String v) {
      inputType = v;
      return this;
    }

    public Builder valInputs(List<String> v) {
      valInputs = v;
      return this;
    }

    public Builder maxRecordBytes(int v) {
      maxRecordBytes = v;
      return this;
    }

    public Builder maxBadFraction(double v) {
      maxBadFraction = v;
      return this;
    }

    public Builder format(RecordFormat v) {
      format = v;
      return this;
    }

    public Builder columns(Map<String, String> v) {
      columns = v;
      return this;
    }

    public Builder template(String v) {
      template = v;
      return this;
    }

    /** A classifier's labels instead of the model's config.json's (--labels, --num-labels, --regression). */
    public Builder labels(io.lorafleet.worker.model.Labels v) {
      labels = v;
      return this;
    }

    public Builder trainOnInputs(boolean v) {
      trainOnInputs = v;
      return this;
    }

    public Builder modelDir(String v) {
      modelDir = v;
      return this;
    }

    public Builder maxSeqLen(int v) {
      maxSeqLen = v;
      return this;
    }

    public Builder truncation(String v) {
      truncation = v;
      return this;
    }

    public Builder pack(boolean v) {
      pack = v;
      return this;
    }

    public Builder output(String v) {
      output = v;
      return this;
    }

    public Builder shards(int v) {
      shards = v;
      return this;
    }

    public Builder valFraction(double v) {
      valFraction = v;
      return this;
    }

    public Builder seed(long v) {
      seed = v;
      return this;
    }

    public Builder overwrite(boolean v) {
      overwrite = v;
      return this;
    }

    public PrepareOptions build() {
      return new PrepareOptions(
          new Source(inputs, inputType, valInputs, maxRecordBytes, maxBadFraction),
          new Records(format, columns, template, trainOnInputs, labels),
          new Tokens(modelDir, maxSeqLen, truncation, pack),
          new Split(output, shards, valFraction, seed, overwrite));
    }
  }
}
