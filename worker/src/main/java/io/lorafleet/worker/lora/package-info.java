/**
 * LoRA and its variants over a base: the PEFT config ({@link io.lorafleet.worker.lora.LoraConfig}), target matching
 * ({@link io.lorafleet.worker.lora.LoraTarget}), the adapted model and its flat parameter layout
 * ({@link io.lorafleet.worker.lora.LoraModel}, {@link io.lorafleet.worker.lora.FlatLayout}), the forward term with its
 * equations ({@link io.lorafleet.worker.lora.LoraDelta}), many adapters in one batch
 * ({@link io.lorafleet.worker.lora.MixedDelta}, {@link io.lorafleet.worker.lora.StackedDelta}), and PEFT's adapter files
 * ({@link io.lorafleet.worker.lora.AdapterFormat}).
 *
 * <p>Imports: {@code worker.model}, {@code worker.safetensors} and {@code worker.train} (the flat-buffer contract; a loop,
 * since {@code train} imports this package back).
 */
package io.lorafleet.worker.lora;
