/**
 * {@code lorafleet serve}: an OpenAI-compatible HTTP server (as vLLM's and LoRAX's are) over one
 * base model and many LoRA adapters. {@link io.lorafleet.driver.serve.ApiServer} speaks HTTP
 * (Jetty), {@link io.lorafleet.driver.serve.StrictJson} reads bodies and
 * {@link io.lorafleet.driver.serve.OpenAiRequests} checks them,
 * {@link io.lorafleet.driver.serve.Scheduler} runs continuous batching of mixed adapters over
 * {@link io.lorafleet.worker.generate.DecodeBatch} within a KV budget,
 * {@link io.lorafleet.driver.serve.AdapterRegistry} loads and unloads adapters at run time,
 * {@link io.lorafleet.driver.serve.TextStream} turns tokens into streamed text with stop strings,
 * and {@link io.lorafleet.driver.serve.DisconnectWatch} notices clients that go away.
 *
 * <p>Every limit on memory and connections is one of {@link io.lorafleet.driver.serve.ServeOptions},
 * never something a request chooses; every error is an {@link io.lorafleet.driver.serve.ApiError}
 * (Jetty's own through {@link io.lorafleet.driver.serve.JsonErrorHandler}) in OpenAI's JSON form.
 * It may import the worker's model, generation and adapter packages, Jetty and Jackson; nothing of
 * Spark.
 */
package io.lorafleet.driver.serve;
