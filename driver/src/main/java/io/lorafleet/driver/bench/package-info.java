/**
 * The driver's benchmarks, apart from the code they measure: the gradient channel and the optimizer against simulated
 * workers in a second JVM ({@link io.lorafleet.driver.bench.CommBenchmark}, {@code lorafleet bench-comm}), and
 * {@code lorafleet serve} under a steady load and a flood ({@link io.lorafleet.driver.bench.ServeBenchmark},
 * {@code lorafleet bench-serve}). They report ratios and peak memory from one run; no test decides anything by them.
 *
 * <p>Imports: the driver's {@code allreduce}, {@code kernels}, {@code optim} and {@code serve}, and the worker's
 * {@code bench} (resident-memory readings), {@code lora}, {@code model} and {@code tokenizer}.
 */
package io.lorafleet.driver.bench;
