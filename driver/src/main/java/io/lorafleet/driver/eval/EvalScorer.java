package io.lorafleet.driver.eval;

import io.lorafleet.datasets.arrow.Example;
import io.lorafleet.driver.executor.ValidationScorer;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.LanguageModel;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/** A run's evaluations scored as eval scores candidates: {@link Evaluator#localMany}, its {@link Scores} encoded. */
public final class EvalScorer implements ValidationScorer {
  private static final long serialVersionUID = 1L;

  @Override
  public byte[] score(LanguageModel base, LoraModel lora, List<float[]> candidates, List<Example> rows, int microBatch, boolean generate) {
    List<Optional<AdapterFormat.Loaded>> adapters = new ArrayList<>();
    for (float[] values : candidates) {
      adapters.add(Optional.of(new AdapterFormat.Loaded(lora, values, Map.of())));
    }
    return Scores.encodeAll(Evaluator.localMany(base, adapters, rows, microBatch, generate));
  }

  /**
   * Each of {@code candidates}' scores added over the answers, in their order (none: zero scores);
   * an answer scoring another number of candidates is refused.
   */
  public static List<Scores> decodeAndAdd(List<byte[]> answers, int candidates) {
    if (answers.isEmpty()) {
      return java.util.Collections.nCopies(candidates, Scores.ZERO);
    }
    List<List<Scores>> all = new ArrayList<>();
    for (byte[] a : answers) {
      List<Scores> x = Scores.decodeAll(a);
      if (x.size() != candidates) {
        throw new IllegalArgumentException("a worker scored " + x.size() + " validation candidates but " + candidates + " were sent");
      }
      all.add(x);
    }
    return Scores.sumEach(all);
  }
}
