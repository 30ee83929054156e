/**
 * {@code lorafleet train}: the job's settings ({@link io.lorafleet.driver.train.TrainConfig} and its options), the loop that
 * launches barrier stages and relaunches them from the last checkpoint ({@link io.lorafleet.driver.train.Trainer}), one
 * stage's steps on the driver ({@link io.lorafleet.driver.train.Stage}), the data order and global batches
 * ({@link io.lorafleet.driver.train.EpochOrder}, {@link io.lorafleet.driver.train.GlobalBatch}), faults at named steps
 * ({@link io.lorafleet.driver.train.FaultPlan}), the run's identity and model card; and, for now, the executor side
 * ({@link io.lorafleet.driver.train.WorkerTask}, {@link io.lorafleet.driver.train.ExecutorGroup},
 * {@link io.lorafleet.driver.train.ModelCache}, {@link io.lorafleet.driver.train.ModelFiles}).
 *
 * <p>Imports: {@code datasets.arrow}, the driver's {@code allreduce}, {@code average}, {@code checkpoint},
 * {@code metrics}, {@code optim} and {@code report}, and the worker's {@code lora}, {@code model}, {@code quant},
 * {@code safetensors}, {@code tokenizer} and {@code train}.
 */
package io.lorafleet.driver.train;
