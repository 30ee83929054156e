package io.lorafleet.driver.optim;

/**
 * Dynamic loss scaling for fp16 compute, as torch.cuda.amp.GradScaler does it, with its defaults:
 * the loss is multiplied by the scale (2^16 at first) before the backward pass, so small gradients
 * survive fp16; the driver divides the gradients by it again before clipping. A step whose gradient
 * overflowed is skipped and the scale halved; after {@code growthInterval} (2000) clean steps in a
 * row the scale doubles. Workers computing in fp32 do not scale, and the driver leaves their
 * gradients alone.
 */
public final class LossScaler {
  public static final double INITIAL = 65536.0;
  public static final int GROWTH_INTERVAL = 2000;

  private final int growthInterval;
  private double scale;
  private int cleanSteps;

  public LossScaler() {
    this(INITIAL, 0, GROWTH_INTERVAL);
  }

  /** A scaler resumed from a checkpoint (or with another growth interval, for tests). */
  public LossScaler(double scale, int cleanSteps, int growthInterval) {
    if (!(scale > 0) || cleanSteps < 0 || growthInterval <= 0) {
      throw new IllegalArgumentException("loss scale must be > 0, clean steps >= 0 and the growth interval > 0 but found " + scale + ", " + cleanSteps
          + ", " + growthInterval);
    }
    this.scale = scale;
    this.cleanSteps = cleanSteps;
    this.growthInterval = growthInterval;
  }

  /** The scale to apply to this step's loss. */
  public double scale() {
    return scale;
  }

  /** Clean steps since the scale last changed (checkpointed with the scale). */
  public int cleanSteps() {
    return cleanSteps;
  }

  /** Records a step's outcome: an overflow halves the scale, {@code growthInterval} clean steps double it. */
  public void update(boolean overflow) {
    if (overflow) {
      scale *= 0.5;
      cleanSteps = 0;
      return;
    }
    if (++cleanSteps == growthInterval) {
      scale *= 2.0;
      cleanSteps = 0;
    }
  }
}
