package io.lorafleet.driver.average;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;

/**
 * The running averages of a run's adapter, kept on the driver beside the fp32 master copy and
 * updated after optimizer steps, so that averaging costs no worker any time: an EMA
 * (--ema-decay D: ema ← D·ema + (1 − D)·θ, from θ at the run's first step) and BEMA ({@link Bema}).
 * Both update every {@code every} steps (--average-every). They average the adapter's parameters
 * themselves, as TRL's callback averages a PEFT model's trainable parameters: for LoRA the factors
 * A and B each, so the average's update is B̄·Ā, not the mean of the B·A; DoRA's magnitudes,
 * AdaLoRA's singular values and VeRA's scaling vectors alike, element by element (frozen slots
 * stay what they are). Their state goes into every checkpoint ({@link #tensors}), so a resumed
 * run continues them exactly.
 */
public final class RunningAverages {
  static final String EMA = "lorafleet.ema";
  static final String BEMA_MU = "lorafleet.bema.mu";
  static final String BEMA_THETA0 = "lorafleet.bema.theta0";
  static final String BEMA = "lorafleet.bema";

  private final double decay;
  private final Bema bema;
  private final int every;
  private float[] ema;
  private float[] mu;
  private float[] theta0;
  private float[] bemaValues;

  /**
   * @param decay the EMA's decay in (0, 1); 0: no EMA
   * @param bema BEMA's settings ({@link Bema#OFF}: none)
   * @param every steps between updates
   */
  public RunningAverages(double decay, Bema bema, int every) {
    if (decay < 0 || decay >= 1) {
      throw new IllegalArgumentException("--ema-decay must be in (0, 1) (0 disables) but found " + decay);
    }
    if (every < 1) {
      throw new IllegalArgumentException("--average-every must be >= 1 but found " + every);
    }
    this.decay = decay;
    this.bema = bema;
    this.every = every;
  }

  /** Whether the run keeps any running average. */
  public boolean any() {
    return decay > 0 || bema.on();
  }

  /**
   * Starts, from the adapter at step {@code step}, each average the run keeps that holds no state yet:
   * at the run's first step, or at a resumed checkpoint that did not keep it. BEMA starts only once
   * its burn-in is over.
   */
  public void startAt(int step, float[] params) {
    if (decay > 0 && ema == null) {
      ema = params.clone();
    }
    if (bema.on() && theta0 == null && step >= bema.updateAfter()) {
      snapshotBema(params);
    }
  }

  private void snapshotBema(float[] params) {
    theta0 = params.clone();
    mu = params.clone();
    bemaValues = params.clone();
  }

  /** After optimizer step {@code step} (1-based) left the adapter at {@code params}. */
  public void afterStep(int step, float[] params) {
    if (decay > 0 && ema == null) {
      throw new IllegalStateException("the EMA was updated at step " + step + " before it was started");
    }
    if (decay > 0 && step % every == 0) {
      for (int i = 0; i < params.length; i++) {
        ema[i] = (float) (decay * ema[i] + (1 - decay) * params[i]);
      }
    }
    if (!bema.on()) {
      return;
    }
    if (theta0 == null) {
      if (step == bema.updateAfter()) {
        snapshotBema(params);
      }
      return;
    }
    int t = step - bema.updateAfter();
    if (t > 0 && t % every == 0) {
      double beta = bema.beta(t);
      double alpha = bema.alpha(t);
      for (int i = 0; i < params.length; i++) {
        mu[i] = (float) ((1 - beta) * mu[i] + beta * params[i]);
        bemaValues[i] = (float) (mu[i] + alpha * ((double) params[i] - theta0[i]));
      }
    }
  }

  /** The EMA of the adapter, when the run keeps one. */
  public Optional<float[]> ema() {
    return Optional.ofNullable(ema);
  }

  /** BEMA's adapter as of its last update (the adapter itself before its burn-in ends), when the run keeps one. */
  public Optional<float[]> bema(float[] params) {
    return bema.on() ? Optional.of(bemaValues != null ? bemaValues : params) : Optional.empty();
  }

  /** The state a checkpoint saves (optimizer.safetensors' lorafleet.ema, lorafleet.bema.*). */
  public Map<String, float[]> tensors() {
    Map<String, float[]> out = new LinkedHashMap<>();
    if (ema != null) {
      out.put(EMA, ema.clone());
    }
    if (theta0 != null) {
      out.put(BEMA_MU, mu.clone());
      out.put(BEMA_THETA0, theta0.clone());
      out.put(BEMA, bemaValues.clone());
    }
    return out;
  }

  /**
   * Back to a checkpoint's state: what it saved is taken as it is; an average it did not keep (the
   * run had no such flag then) starts again from the checkpoint's adapter at the next {@link #startAt}.
   */
  public void restore(Map<String, float[]> saved) {
    ema = decay > 0 && saved.containsKey(EMA) ? saved.get(EMA).clone() : null;
    boolean bemaSaved = bema.on() && saved.containsKey(BEMA_THETA0);
    theta0 = bemaSaved ? saved.get(BEMA_THETA0).clone() : null;
    mu = bemaSaved ? saved.get(BEMA_MU).clone() : null;
    bemaValues = bemaSaved ? saved.get(BEMA).clone() : null;
  }

  /** Back to step 0: started again at the next {@link #startAt}. */
  public void reset() {
    ema = mu = theta0 = bemaValues = null;
  }
}
