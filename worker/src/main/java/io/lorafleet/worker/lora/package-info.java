/**
 * LoRA and its variants over a base: the PEFT config ({@link io.lorafleet.worker.lora.LoraConfig}); the PEFT methods as
 * types ({@link io.lorafleet.worker.lora.PeftMethod}: {@link io.lorafleet.worker.lora.LoraMethod},
 * {@link io.lorafleet.worker.lora.DoraMethod}, {@link io.lorafleet.worker.lora.VeraMethod},
 * {@link io.lorafleet.worker.lora.AdaloraMethod}, and any registered through {@link io.lorafleet.worker.lora.PeftMethods});
 * target matching
 * ({@link io.lorafleet.worker.lora.LoraTarget}), the adapted model over its flat parameter layout
 * ({@link io.lorafleet.worker.lora.LoraModel}), the forward term with its
 * equations ({@link io.lorafleet.worker.lora.LoraDelta}), many adapters in one batch
 * ({@link io.lorafleet.worker.lora.MixedDelta}, {@link io.lorafleet.worker.lora.StackedDelta}), and PEFT's adapter files
 * ({@link io.lorafleet.worker.lora.AdapterFormat}).
 *
 * <p>Imports: {@code worker.flat} (the flat-buffer contract), {@code worker.model} and {@code worker.safetensors}.
 */
package io.lorafleet.worker.lora;
