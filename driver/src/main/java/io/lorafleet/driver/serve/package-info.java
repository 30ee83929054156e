/**
 * {@code lorafleet serve}: an OpenAI-compatible HTTP server (as vLLM's and LoRAX's are) over one
 * base model and many LoRA adapters. {@link io.lorafleet.driver.serve.ApiServer} speaks HTTP
 * (Jetty), {@link io.lorafleet.driver.serve.OpenAiRequests} checks requests,
 * {@link io.lorafleet.driver.serve.Scheduler} runs continuous batching of mixed adapters over
 * {@link io.lorafleet.worker.generate.DecodeBatch}, {@link io.lorafleet.driver.serve.AdapterRegistry}
 * loads and unloads adapters at run time, and {@link io.lorafleet.driver.serve.TextStream} turns
 * tokens into streamed text with stop strings.
 */
package io.lorafleet.driver.serve;
