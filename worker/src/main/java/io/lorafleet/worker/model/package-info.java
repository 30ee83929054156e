/**
 * The frozen base: Hugging Face model directories and their configs ({@link io.lorafleet.worker.model.ModelDirectory},
 * {@link io.lorafleet.worker.model.ModelConfig}, {@link io.lorafleet.worker.model.ModelSkeleton}), the DJL networks of each
 * architecture (Llama, Mistral and Qwen2, GPT-2, GPT-J; RoBERTa and DeBERTa-v2 encoders), their forward pass over a
 * {@link io.lorafleet.worker.model.Batch} or a {@link io.lorafleet.worker.model.KvCache}, and the seam where an adapter adds
 * its term ({@link io.lorafleet.worker.model.LinearDelta}, {@link io.lorafleet.worker.model.ForwardContext}). Parameter names
 * are the checkpoint's own keys. Every array a forward makes belongs to its context's manager.
 *
 * Quantizing a checkpoint to NF4 on disk is {@link io.lorafleet.worker.model.QuantizeModel}.
 *
 * <p>Imports: {@code worker.quant} (quantized projections), {@code worker.safetensors} and {@code worker.tokenizer}.
 */
package io.lorafleet.worker.model;
