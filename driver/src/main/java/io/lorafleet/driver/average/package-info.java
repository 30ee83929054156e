/**
 * Averaging and merging adapters: uniform, weighted and EMA means of checkpoints and their combinations
 * ({@link io.lorafleet.driver.average.AdapterAverager}), the exact truncated SVD that refactors a dense update to a rank
 * ({@link io.lorafleet.driver.average.LowRank}), and task arithmetic with TIES and DARE
 * ({@link io.lorafleet.driver.average.TaskMerge}).
 *
 * <p>Imports: {@code worker.lora} and {@code worker.model}.
 */
package io.lorafleet.driver.average;
