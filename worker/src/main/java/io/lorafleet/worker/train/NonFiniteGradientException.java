package io.lorafleet.worker.train;

/**
 * A step's gradient holds NaN or infinity; the message names the tensor. In fp32 it means the step
 * diverged; under fp16 compute it is an overflow, which the worker reports to the driver as such
 * (the step is skipped, as torch's GradScaler skips it) instead of pushing the values.
 */
public final class NonFiniteGradientException extends IllegalStateException {
  public NonFiniteGradientException(String message) {
    super(message);
  }
}
