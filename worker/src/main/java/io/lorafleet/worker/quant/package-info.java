/**
 * Quantized frozen bases: bitsandbytes' NF4 (with and without double quantization) and GPTQ INT4.
 * Host-side formats ({@link io.lorafleet.worker.quant.Nf4Tensor}, {@link io.lorafleet.worker.quant.GptqTensor})
 * read and write the Hugging Face on-disk layouts bit for bit; their device forms
 * ({@link io.lorafleet.worker.quant.QuantizedLinear}) keep the packed codes on the accelerator and
 * dequantize one projection at a time, just before its matmul.
 *
 * <p>Imports: {@code worker.safetensors} only; the model package uses this one, never the reverse.
 */
package io.lorafleet.worker.quant;
