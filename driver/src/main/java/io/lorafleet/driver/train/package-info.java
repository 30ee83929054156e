/**
 * {@code lorafleet train} on the driver: the job's settings as named groups ({@link io.lorafleet.driver.train.TrainConfig}),
 * the loop that launches barrier stages and relaunches them from the last checkpoint ({@link io.lorafleet.driver.train.Trainer},
 * {@link io.lorafleet.driver.train.TrainingState}), one stage's steps on the driver ({@link io.lorafleet.driver.train.Stage}),
 * and the run's identity, resolved configuration and model card. What runs in the executors is {@code driver.executor}.
 *
 * <p>Imports: the driver's {@code allreduce}, {@code average}, {@code checkpoint}, {@code executor}, {@code kernels},
 * {@code metrics}, {@code optim} and {@code report}, and the worker's {@code flat}, {@code lora}, {@code model},
 * {@code quant}, {@code tokenizer} and {@code train}.
 */
package io.lorafleet.driver.train;
