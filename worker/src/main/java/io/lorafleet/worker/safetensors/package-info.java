/** A strict safetensors reader and an atomic, deterministic writer. No DJL, no native memory. */
package io.lorafleet.worker.safetensors;
