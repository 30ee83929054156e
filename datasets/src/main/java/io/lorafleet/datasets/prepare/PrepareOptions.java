package io.lorafleet.datasets.prepare;

import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * Options of {@code lorafleet prepare}. {@code columns} maps the format's logical fields (context,
 * target, prompt, completion, instruction, input, output, text) to the input's column names.
 */
public record PrepareOptions(
    List<String> inputs,
    String inputType,
    RecordFormat format,
    Map<String, String> columns,
    String template,
    String modelDir,
    String output,
    int maxSeqLen,
    String truncation,
    boolean trainOnInputs,
    long seed,
    double valFraction,
    int shards,
    double maxBadFraction,
    boolean pack,
    List<String> valInputs,
    int maxRecordBytes,
    boolean overwrite) implements java.io.Serializable {

  /** The default of --max-record-bytes: a record longer than this is quarantined, never held whole. */
  public static final int DEFAULT_MAX_RECORD_BYTES = 16 << 20;

  /** With the default record cap, into a new output. */
  public PrepareOptions(List<String> inputs, String inputType, RecordFormat format, Map<String, String> columns, String template, String modelDir,
      String output, int maxSeqLen, String truncation, boolean trainOnInputs, long seed, double valFraction, int shards, double maxBadFraction,
      boolean pack, List<String> valInputs) {
    this(inputs, inputType, format, columns, template, modelDir, output, maxSeqLen, truncation, trainOnInputs, seed, valFraction, shards, maxBadFraction,
        pack, valInputs, DEFAULT_MAX_RECORD_BYTES, false);
  }

  /** With packing chosen, no separate validation input. */
  public PrepareOptions(List<String> inputs, String inputType, RecordFormat format, Map<String, String> columns, String template, String modelDir,
      String output, int maxSeqLen, String truncation, boolean trainOnInputs, long seed, double valFraction, int shards, double maxBadFraction,
      boolean pack) {
    this(inputs, inputType, format, columns, template, modelDir, output, maxSeqLen, truncation, trainOnInputs, seed, valFraction, shards, maxBadFraction,
        pack, List.of());
  }

  /** Without packing. */
  public PrepareOptions(List<String> inputs, String inputType, RecordFormat format, Map<String, String> columns, String template, String modelDir,
      String output, int maxSeqLen, String truncation, boolean trainOnInputs, long seed, double valFraction, int shards, double maxBadFraction) {
    this(inputs, inputType, format, columns, template, modelDir, output, maxSeqLen, truncation, trainOnInputs, seed, valFraction, shards, maxBadFraction,
        false, List.of());
  }


  public PrepareOptions {
    if (inputs.isEmpty()) {
      throw new IllegalArgumentException("--input must name at least one file or directory");
    }
    if (!List.of("auto", "jsonl", "parquet", "csv").contains(inputType)) {
      throw new IllegalArgumentException("--input-type must be auto, jsonl, parquet or csv but found '" + inputType + "'");
    }
    if (maxSeqLen < 2) {
      throw new IllegalArgumentException("--max-seq-len must be >= 2 but found " + maxSeqLen);
    }
    if (!List.of("drop", "truncate-context").contains(truncation)) {
      throw new IllegalArgumentException("--truncation must be drop or truncate-context but found '" + truncation + "'");
    }
    if (valFraction < 0 || valFraction >= 1) {
      throw new IllegalArgumentException("--val-fraction must be in [0, 1) but found " + valFraction);
    }
    if (shards <= 0) {
      throw new IllegalArgumentException("--shards must be > 0 but found " + shards);
    }
    if (maxBadFraction < 0 || maxBadFraction > 1) {
      throw new IllegalArgumentException("--max-bad-fraction must be in [0, 1] but found " + maxBadFraction);
    }
    if (maxRecordBytes <= 0) {
      throw new IllegalArgumentException("--max-record-bytes must be > 0 but found " + maxRecordBytes);
    }
    if (!valInputs.isEmpty() && valFraction > 0) {
      throw new IllegalArgumentException("give either --val-fraction or --val-input, not both");
    }
    inputs = List.copyOf(inputs);
    valInputs = List.copyOf(valInputs);
    columns = Map.copyOf(columns);
    template = template == null ? "" : template;
  }

  /** The same options, replacing whatever {@code output} holds when {@code on}. */
  public PrepareOptions withOverwrite(boolean on) {
    return new PrepareOptions(inputs, inputType, format, columns, template, modelDir, output, maxSeqLen, truncation, trainOnInputs, seed, valFraction,
        shards, maxBadFraction, pack, valInputs, maxRecordBytes, on);
  }

  /** The same options with records capped at {@code bytes}. */
  public PrepareOptions withMaxRecordBytes(int bytes) {
    return new PrepareOptions(inputs, inputType, format, columns, template, modelDir, output, maxSeqLen, truncation, trainOnInputs, seed, valFraction,
        shards, maxBadFraction, pack, valInputs, bytes, overwrite);
  }

  /** The user's prompt template ("" when none was given). */
  public Optional<String> templateText() {
    return template.isEmpty() ? Optional.empty() : Optional.of(template);
  }

  public String column(String logical) {
    return columns.getOrDefault(logical, logical);
  }
}
