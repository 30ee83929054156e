package io.lorafleet.driver.optim;

/**
 * AdamW (Loshchilov & Hutter 2019) on one flat fp32 buffer, owned by the driver. Decoupled weight
 * decay, bias-corrected moments, as torch.optim.AdamW. SGD is AdamW's special case with
 * {@code sgd=true} (plain p ← p − lr·(g + wd·p)).
 */
public final class AdamW {
  private final double beta1;
  private final double beta2;
  private final double eps;
  private final double weightDecay;
  private final boolean sgd;
  private final float[] m;
  private final float[] v;
  private long t;

  public AdamW(int size, double beta1, double beta2, double eps, double weightDecay, boolean sgd) {
    this.beta1 = beta1;
    this.beta2 = beta2;
    this.eps = eps;
    this.weightDecay = weightDecay;
    this.sgd = sgd;
    this.m = new float[size];
    this.v = new float[size];
  }

  /** One update of {@code p} in place with gradient {@code g} at learning rate {@code lr}. */
  public void step(float[] p, float[] g, double lr) {
    t++;
    if (sgd) {
      for (int i = 0; i < p.length; i++) {
        p[i] -= (float) (lr * (g[i] + weightDecay * p[i]));
      }
      return;
    }
    double bc1 = 1 - Math.pow(beta1, t);
    double bc2 = 1 - Math.pow(beta2, t);
    for (int i = 0; i < p.length; i++) {
      p[i] *= (float) (1 - lr * weightDecay);
      m[i] = (float) (beta1 * m[i] + (1 - beta1) * g[i]);
      v[i] = (float) (beta2 * v[i] + (1 - beta2) * g[i] * g[i]);
      double mh = m[i] / bc1;
      double vh = v[i] / bc2;
      p[i] -= (float) (lr * mh / (Math.sqrt(vh) + eps));
    }
  }

  public float[] firstMoment() {
    return m;
  }

  public float[] secondMoment() {
    return v;
  }

  public long stepCount() {
    return t;
  }

  /** Restores moments and step count from a checkpoint. */
  public void restore(float[] m1, float[] m2, long steps) {
    if (m1.length != m.length || m2.length != v.length) {
      throw new IllegalArgumentException("optimizer state has " + m1.length + " floats but the adapter has " + m.length);
    }
    System.arraycopy(m1, 0, m, 0, m.length);
    System.arraycopy(m2, 0, v, 0, v.length);
    t = steps;
  }

  /** Scales g so its global L2 norm is at most maxNorm (torch.nn.utils.clip_grad_norm_); returns the norm before. */
  public static double clipByGlobalNorm(float[] g, double maxNorm) {
    double ss = 0;
    for (float x : g) {
      ss += (double) x * x;
    }
    double norm = Math.sqrt(ss);
    if (maxNorm > 0 && norm > maxNorm) {
      float s = (float) (maxNorm / (norm + 1e-6));
      for (int i = 0; i < g.length; i++) {
        g[i] *= s;
      }
    }
    return norm;
  }
}
