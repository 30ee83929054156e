/**
 * The gradient channel between the driver and the workers: the driver's server ({@link io.lorafleet.driver.allreduce.GradientServer})
 * and a worker's client ({@link io.lorafleet.driver.allreduce.GradientClient}) over TCP
 * ({@link io.lorafleet.driver.allreduce.Wire}, {@link io.lorafleet.driver.allreduce.Transport}), a reduce that streams
 * pushes as they arrive into a fixed summation order ({@link io.lorafleet.driver.allreduce.StreamingReduce},
 * {@link io.lorafleet.driver.allreduce.SumTree} over the micro-batch slots of a step) so that the sum is bit-identical
 * whatever the arrival order and whatever the number of workers.
 *
 * <p>Imports: {@code driver.kernels} only.
 */
package io.lorafleet.driver.allreduce;
