package io.lorafleet.driver.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * The best candidate of a run so far by its selection metric ({@link TrainConfig.Selection}), and
 * the early-stopping count, as transformers keeps them in TrainerState (best_metric,
 * best_model_checkpoint) and EarlyStoppingCallback (its patience counter). A candidate is the live
 * adapter ("adapter") or one of the running averages ("ema", "bema"), at an evaluation's step. Its
 * state goes into every checkpoint's trainer_state.json, so a resumed run keeps choosing as the
 * uninterrupted one would.
 */
final class BestModel {
  /** Where the best candidate's adapter is kept in the run directory. */
  static final String DIR = io.lorafleet.driver.checkpoint.RunFiles.BEST;

  private final TrainConfig.Selection selection;
  private double metric = Double.NaN;
  private String candidate = "";
  private int step = -1;
  private int withoutImprovement;

  BestModel(TrainConfig.Selection selection) {
    this.selection = selection;
  }

  /**
   * An evaluation's candidates at {@code step}, by name and value of the selection metric, in the
   * order they are preferred on a tie (the live adapter first). Returns the name of the one that
   * became the best, if one did; the early-stopping count moves by the evaluation's best candidate.
   */
  java.util.Optional<String> offer(int step, java.util.Map<String, Double> values) {
    String top = null;
    double topValue = Double.NaN;
    for (var e : values.entrySet()) {
      double v = e.getValue();
      if (top == null || selection.improves(v, topValue, 0)) {
        top = e.getKey();
        topValue = v;
      }
    }
    if (top == null) {
      return java.util.Optional.empty();
    }
    withoutImprovement = selection.improves(topValue, metric, selection.threshold()) ? 0 : withoutImprovement + 1;
    if (!selection.improves(topValue, metric, 0)) {
      return java.util.Optional.empty();
    }
    metric = topValue;
    candidate = top;
    this.step = step;
    return java.util.Optional.of(top);
  }

  /** Whether --early-stopping-patience evaluations in a row have not improved the best. */
  boolean stop() {
    return selection.patience() > 0 && withoutImprovement >= selection.patience();
  }

  boolean any() {
    return step >= 0;
  }

  String candidate() {
    return candidate;
  }

  int step() {
    return step;
  }

  double metric() {
    return metric;
  }

  /**
   * trainer_state.json's fields: best_metric and best_model_checkpoint as transformers names them,
   * the latter the run's best/ (a PEFT adapter, whichever candidate won: a checkpoint may be pruned
   * and an average has no checkpoint of its own), and lorafleet's own: the candidate, its step and
   * the early-stopping count.
   */
  void write(ObjectNode state, String runUri) {
    if (!any()) {
      return;
    }
    state.put("best_metric", metric);
    state.put("best_model_checkpoint", runUri + "/" + DIR);
    state.put("best_candidate", candidate);
    state.put("best_step", step);
    state.put("early_stopping_patience_counter", withoutImprovement);
  }

  /** Back to what a checkpoint's trainer_state.json recorded (nothing chosen yet when it holds none). */
  void restore(JsonNode state) {
    metric = state.path("best_metric").isNumber() ? state.get("best_metric").asDouble() : Double.NaN;
    candidate = state.path("best_candidate").asText("");
    step = state.path("best_step").asInt(-1);
    withoutImprovement = state.path("early_stopping_patience_counter").asInt(0);
  }
}
