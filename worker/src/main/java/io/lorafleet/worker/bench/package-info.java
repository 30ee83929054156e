/**
 * Benchmarks of the model core, never run as tests: a LoRA step against full fine-tuning
 * ({@link io.lorafleet.worker.bench.StepBenchmark}, with the process's resident memory) and mixed-adapter batches
 * ({@link io.lorafleet.worker.bench.MixedAdapterBenchmark}).
 *
 * <p>Imports: the worker's {@code lora}, {@code model}, {@code plan}, {@code quant} and {@code train}.
 */
package io.lorafleet.worker.bench;
