/**
 * LoRA and its variants over a base: the PEFT config ({@link io.lorafleet.worker.lora.LoraConfig}), target matching
 * ({@link io.lorafleet.worker.lora.LoraTarget}), the adapted model over its flat parameter layout
 * ({@link io.lorafleet.worker.lora.LoraModel}), the forward term with its
 * equations ({@link io.lorafleet.worker.lora.LoraDelta}), many adapters in one batch
 * ({@link io.lorafleet.worker.lora.MixedDelta}, {@link io.lorafleet.worker.lora.StackedDelta}), and PEFT's adapter files
 * ({@link io.lorafleet.worker.lora.AdapterFormat}).
 *
 * <p>Imports: {@code worker.flat} (the flat-buffer contract), {@code worker.model} and {@code worker.safetensors}.
 */
package io.lorafleet.worker.lora;
