package io.lorafleet.worker.safetensors;

/** A malformed or inconsistent safetensors file. The message names the file and, where known, the tensor. */
public final class SafetensorsException extends RuntimeException {
  public SafetensorsException(String message) {
    super(message);
  }

  public SafetensorsException(String message, Throwable cause) {
    super(message, cause);
  }
}
