package io.lorafleet.worker.train;

/**
 * A step's gradient (or loss) holds NaN or infinity, the one type for it wherever it is found: a
 * worker's backward pass, or the driver's reduce of the pushes. The message names the tensor. In fp32
 * it means the step diverged; under fp16 compute it is an overflow, which the worker reports to the
 * driver as such (the step is skipped, as torch's GradScaler skips it) instead of pushing the values.
 */
public final class NonFiniteGradientException extends IllegalStateException {
  /** The flat index where the non-finite gradient's tensor starts, or -1 where no one tensor is known. */
  private final int at;

  public NonFiniteGradientException(String message) {
    this(message, -1);
  }

  public NonFiniteGradientException(String message, int at) {
    super(message);
    this.at = at;
  }

  /** The flat index where the non-finite gradient's tensor starts, or -1 where no one tensor is known. */
  public int at() {
    return at;
  }
}
