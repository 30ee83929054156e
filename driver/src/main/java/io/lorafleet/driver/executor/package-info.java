/**
 * Everything that runs in an executor JVM: the body of a barrier task ({@link io.lorafleet.driver.executor.WorkerTask}),
 * shipped only what a worker needs ({@link io.lorafleet.driver.executor.WorkerJob}); the tasks of one executor
 * adding their gradients before one push ({@link io.lorafleet.driver.executor.ExecutorGroup}); the base loaded once per
 * executor and the dataset's splits cached there ({@link io.lorafleet.driver.executor.ModelCache},
 * {@link io.lorafleet.driver.executor.ModelFiles}), which {@code eval}, {@code ml} and {@code demo} use too; the data
 * order and global batches, bit-identical for any worker count ({@link io.lorafleet.driver.executor.EpochOrder},
 * {@link io.lorafleet.driver.executor.GlobalBatch}); and faults at named steps ({@link io.lorafleet.driver.executor.FaultPlan}).
 *
 * <p>The worker's end of the gradient channel, {@link io.lorafleet.driver.allreduce.GradientClient}, stays in
 * {@code allreduce} beside the server: both speak the one wire protocol, which is that package's own.
 *
 * <p>Imports: {@code datasets.arrow}, the driver's {@code allreduce}, {@code checkpoint} (checksums of cached files) and
 * {@code kernels}, and the worker's {@code lora}, {@code model}, {@code quant}, {@code safetensors} and {@code train};
 * never {@code driver.train}.
 */
package io.lorafleet.driver.executor;
