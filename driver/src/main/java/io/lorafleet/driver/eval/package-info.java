/**
 * {@code lorafleet eval}: loss, perplexity and greedy exact match for causal LMs, and accuracy, F1, Matthews, Pearson and
 * Spearman for sequence classifiers ({@link io.lorafleet.driver.eval.ClassificationMetrics}), for the base, every
 * checkpoint, averages and the final adapter of a run in one mixed-adapter pass on the executors
 * ({@link io.lorafleet.driver.eval.Evaluator}, {@link io.lorafleet.driver.eval.RunEvaluation},
 * {@link io.lorafleet.driver.eval.Scores}).
 *
 * <p>Imports: {@code datasets.arrow}, {@code driver.checkpoint}, {@code driver.report}, {@code driver.train} (its model
 * cache on the executors) and the worker's {@code generate}, {@code lora}, {@code model}, {@code quant} and {@code train}.
 */
package io.lorafleet.driver.eval;
