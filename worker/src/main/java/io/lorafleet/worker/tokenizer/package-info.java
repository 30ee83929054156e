/**
 * Hugging Face tokenizers through DJL: a model directory's {@code tokenizer.json} and its special tokens
 * ({@link io.lorafleet.worker.tokenizer.Tokenizer}, {@link io.lorafleet.worker.tokenizer.TokenizerFiles}), as
 * transformers' fast tokenizer encodes and decodes. Imports nothing of lorafleet.
 */
package io.lorafleet.worker.tokenizer;
