package io.lorafleet.driver.average;

import java.io.Serializable;

/**
 * BEMA's settings (Block and Zhang, "EMA Without the Lag: Bias-Corrected Iterate Averaging
 * Schemes", arXiv 2508.00180; TRL's BEMACallback names them so): after a burn-in of
 * {@code updateAfter} steps (τ) the run snapshots θ₀ and starts an EMA μ; at each update, t steps
 * after τ,
 *
 * <pre>
 *   β_t = max((ρ + γ·t)^−κ, min_ema_multiplier)     μ ← (1 − β_t)·μ + β_t·θ_t
 *   α_t = (ρ + γ·t)^−η                              BEMA_t = μ + α_t·(θ_t − θ₀)
 * </pre>
 *
 * with κ = {@code emaPower}, η = {@code biasPower}, ρ = {@code lag}, γ = {@code multiplier}. TRL
 * counts t from step 0 rather than from τ; with τ = 0, its default, the two agree.
 *
 * @param on whether the run keeps a BEMA (--bema)
 */
public record Bema(boolean on, double emaPower, double biasPower, double lag, int updateAfter, double multiplier, double minEmaMultiplier)
    implements Serializable {
  /** TRL's defaults, off. */
  public static final Bema OFF = new Bema(false, 0.5, 0.2, 10, 0, 1.0, 0.0);

  public Bema {
    if (emaPower < 0 || biasPower < 0) {
      throw new IllegalArgumentException("--bema-ema-power and --bema-bias-power must be >= 0 but found " + emaPower + " and " + biasPower);
    }
    if (!(lag > 0) || multiplier < 0 || minEmaMultiplier < 0 || minEmaMultiplier > 1) {
      throw new IllegalArgumentException("--bema-lag must be > 0, --bema-multiplier >= 0 and --bema-min-ema-multiplier in [0, 1], but found "
          + lag + ", " + multiplier + " and " + minEmaMultiplier);
    }
    if (updateAfter < 0) {
      throw new IllegalArgumentException("--bema-update-after must be >= 0 but found " + updateAfter);
    }
  }

  /** β_t, the weight of θ_t in the EMA at t updates' distance from τ. */
  public double beta(int t) {
    return Math.max(Math.pow(lag + multiplier * t, -emaPower), minEmaMultiplier);
  }

  /** α_t, the weight of θ_t − θ₀ in BEMA. */
  public double alpha(int t) {
    return Math.pow(lag + multiplier * t, -biasPower);
  }
}
