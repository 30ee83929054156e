package io.lorafleet.driver.executor;

import io.lorafleet.datasets.arrow.Example;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.LanguageModel;
import java.io.Serializable;
import java.util.List;

/**
 * How a worker scores the candidates of a run's evaluation (the live adapter and the running
 * averages) on its share of the validation rows, and how an executor adds its ranks' scores before
 * it answers the driver. The driver hands in the eval package's scorer, so that a run chooses by
 * the numbers eval computes; the scores travel as that scorer encodes them.
 */
public interface ValidationScorer extends Serializable {
  /**
   * Every candidate's scores, encoded, in one pass over {@code rows}.
   *
   * @param candidates adapter values in {@code lora}'s layout
   * @param generate whether a causal LM generates to count exact matches
   */
  byte[] score(LanguageModel base, LoraModel lora, List<float[]> candidates, List<Example> rows, int microBatch, boolean generate);

  /** Each candidate's scores added over {@code ranks}' answers, in their order, encoded. */
  byte[] add(List<byte[]> ranks);
}
