/**
 * Decoding: one sequence at a time with a KV cache ({@link io.lorafleet.worker.generate.Generator}), or many rows of mixed
 * adapters that join and leave between steps ({@link io.lorafleet.worker.generate.DecodeBatch}), with greedy or top-p
 * sampling ({@link io.lorafleet.worker.generate.Sampling}). No path decodes past the model's context.
 *
 * <p>Imports: {@code worker.lora}, {@code worker.model} and {@code worker.train}.
 */
package io.lorafleet.worker.generate;
