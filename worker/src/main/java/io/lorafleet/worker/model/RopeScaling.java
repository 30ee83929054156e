package io.lorafleet.worker.model;

/**
 * HF {@code rope_scaling}: {@code type} is "default", "linear" (positions divided by factor) or
 * "llama3" (Llama 3.1's frequency-dependent rescaling, transformers' _compute_llama3_parameters).
 */
public record RopeScaling(String type, double factor, double lowFreqFactor, double highFreqFactor, int originalMaxPositions) {
  public static final RopeScaling NONE = new RopeScaling("default", 1, 1, 4, 8192);

  public RopeScaling {
    if (!type.equals("default") && !type.equals("linear") && !type.equals("llama3")) {
      throw new IllegalArgumentException("rope_scaling.rope_type '" + type + "' is not supported, expected default, linear or llama3");
    }
    if (factor <= 0) {
      throw new IllegalArgumentException("rope_scaling.factor must be > 0 but found " + factor);
    }
  }

  /**
   * Inverse frequencies for a head of size {@code dim}: base^(-2i/dim), rescaled as the type says.
   * Computed in float64 and rounded once, as transformers computes them in float32 arithmetic.
   */
  public double[] invFreq(int dim, double base) {
    double[] inv = new double[dim / 2];
    for (int i = 0; i < inv.length; i++) {
      inv[i] = 1.0 / Math.pow(base, (2.0 * i) / dim);
    }
    if (type.equals("llama3")) {
      double lowWavelen = originalMaxPositions / lowFreqFactor;
      double highWavelen = originalMaxPositions / highFreqFactor;
      for (int i = 0; i < inv.length; i++) {
        double wavelen = 2 * Math.PI / inv[i];
        if (wavelen > lowWavelen) {
          inv[i] = inv[i] / factor;
        } else if (wavelen >= highWavelen) {
          double smooth = (originalMaxPositions / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
          inv[i] = (1 - smooth) * inv[i] / factor + smooth * inv[i];
        }
      }
    }
    return inv;
  }

  /** Position multiplier: linear scaling divides positions by the factor. */
  public double positionScale() {
    return type.equals("linear") ? 1.0 / factor : 1.0;
  }
}
