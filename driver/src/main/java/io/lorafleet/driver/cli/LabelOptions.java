package io.lorafleet.driver.cli;

import io.lorafleet.worker.model.Labels;
import java.util.ArrayList;
import java.util.List;
import picocli.CommandLine.Option;

/** A sequence classifier's labels on the command line, as transformers' from_pretrained(num_labels=…, id2label=…) takes them: one of the three. */
final class LabelOptions {
  @Option(names = "--labels", split = ",", description = "a classifier's class names by id (e.g. negative,positive), instead of the base's config.json "
      + "id2label; recorded in the adapter, so commands reading it need no flag") List<String> names = new ArrayList<>();
  @Option(names = "--num-labels", description = "a classifier's number of classes (LABEL_0 .. LABEL_N-1), instead of the base's config.json") Integer numLabels;
  @Option(names = "--regression", description = "a head that regresses one value (num_labels 1, squared error), instead of the base's config.json")
  boolean regression;

  /** The labels given, or {@link Labels#FROM_CONFIG}. */
  Labels labels() {
    return Labels.of(names, numLabels, regression);
  }
}
