/**
 * lorafleet as a Spark ML library: {@link io.lorafleet.driver.ml.LoraTrainer}, an Estimator whose
 * fit prepares a {@code Dataset<Row>} of context-target records and trains a LoRA adapter on the
 * session's executors, and {@link io.lorafleet.driver.ml.LoraAdapterModel}, the Transformer it
 * returns, which adds a generated-text or a loss column. The logic lives in the plain classes the
 * CLI uses (Prepare, Trainer, Generator); these hold Params and validate schemas before any job runs.
 */
package io.lorafleet.driver.ml;
