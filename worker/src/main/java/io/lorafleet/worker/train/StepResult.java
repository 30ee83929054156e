package io.lorafleet.worker.train;

/**
 * One worker's contribution to a step: the gradient of the summed target-token loss with respect to
 * the flat trainable buffer, the loss sum and the number of target tokens. The driver adds these
 * over workers and divides by the total token count.
 */
public record StepResult(float[] gradSum, double lossSum, long tokens) {
  public double meanLoss() {
    return tokens == 0 ? 0 : lossSum / tokens;
  }
}
