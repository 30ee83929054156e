/**
 * A run's output directory: checkpoints written off the training thread and renamed into place
 * ({@link io.lorafleet.driver.checkpoint.CheckpointWriter}), found and checked again on resume
 * ({@link io.lorafleet.driver.checkpoint.Checkpoints}), the lock that keeps a second driver out
 * ({@link io.lorafleet.driver.checkpoint.RunLock}), and the files a run writes beside them
 * ({@link io.lorafleet.driver.checkpoint.RunOutput}); a failure to write is an
 * {@link io.lorafleet.driver.checkpoint.OutputFailure}, never retried as if the step had failed.
 *
 * <p>Imports: {@code driver.optim} (the optimizer state saved with each checkpoint), {@code worker.lora},
 * {@code worker.model} and {@code worker.safetensors}.
 */
package io.lorafleet.driver.checkpoint;
