package io.lorafleet.driver.optim;

import io.lorafleet.driver.kernels.Kernels;
import java.util.List;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * AdamW (Loshchilov & Hutter 2019) on one flat fp32 buffer, owned by the driver: decoupled weight
 * decay and bias-corrected moments in fp32, with torch.optim.AdamW's operations in torch's order
 * ({@code p *= 1 - lr·wd; m.lerp_(g, 1 - β1); v = v·β2 + (1 - β2)·g·g;
 * p += -(lr/bc1)·m / (√v/√bc2 + ε)}). SGD is the special case {@code sgd=true}
 * ({@code p -= lr·(g + wd·p)}).
 *
 * <p>The update is one pass over p, m, v and the gradient sum, vectorized (the JDK's Vector API)
 * and split over every core in fixed chunks. Each lane computes what the scalar tail computes, with
 * no fused multiply-add, so the result does not depend on the vector width or the thread count. The
 * gradient arrives as the reduced sum with the factors that make it the clipped mean, so no
 * separate gradient buffer is written.
 */
public final class AdamW {
  private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
  private final double beta1;
  private final double beta2;
  private final double eps;
  private final double weightDecay;
  private final boolean sgd;
  private final float[] m;
  private final float[] v;
  private final List<Group> groups;
  private long t;

  /**
   * Values [from, to) of the flat buffer that train at {@code lrScale} times the learning rate, with
   * or without weight decay: torch's parameter groups over one flat buffer (LoRA+ puts lora_B and
   * biases in their own).
   */
  public record Group(int from, int to, double lrScale, boolean decay) {
    public Group {
      if (from < 0 || to < from || !(lrScale >= 0)) {
        throw new IllegalArgumentException("a parameter group covers [from, to) with an lr scale >= 0 but found [" + from + ", " + to + ") at "
            + lrScale);
      }
    }

    /** Values that never train (VeRA's shared projections): no update, no moments. */
    public static Group frozen(int from, int to) {
      return new Group(from, to, 0, false);
    }
  }

  /** One group: every value at the learning rate, with weight decay. */
  public AdamW(int size, double beta1, double beta2, double eps, double weightDecay, boolean sgd) {
    this(size, beta1, beta2, eps, weightDecay, sgd, List.of(new Group(0, size, 1.0, true)));
  }

  /** @param groups parameter groups that tile [0, size) in order */
  public AdamW(int size, double beta1, double beta2, double eps, double weightDecay, boolean sgd, List<Group> groups) {
    this.beta1 = beta1;
    this.beta2 = beta2;
    this.eps = eps;
    this.weightDecay = weightDecay;
    this.sgd = sgd;
    this.m = new float[size];
    this.v = new float[size];
    int at = 0;
    for (Group g : groups) {
      if (g.from() != at) {
        throw new IllegalArgumentException("parameter groups must tile the buffer in order: a group starts at " + g.from() + ", expected " + at);
      }
      at = g.to();
    }
    if (at != size) {
      throw new IllegalArgumentException("parameter groups cover " + at + " values but the buffer holds " + size);
    }
    this.groups = List.copyOf(groups);
  }

  /** One update of {@code p} in place with gradient {@code g} at learning rate {@code lr}. */
  public void step(float[] p, float[] g, double lr) {
    step(p, g, 1f, 1f, lr);
  }

  /**
   * One update of {@code p} in place with gradient {@code (sum[i]·scale)·clip}: the reduced sum, the
   * factor that makes it a mean (and unscales fp16), then the clipping coefficient, each a float
   * multiply as torch would do them on the mean gradient.
   */
  public void step(float[] p, float[] sum, float scale, float clip, double lr) {
    if (p.length != m.length || sum.length < p.length) {
      throw new IllegalArgumentException("AdamW holds state for " + m.length + " values but got " + p.length + " parameters and " + sum.length
          + " gradient values");
    }
    t++;
    Coefficients[] cs = new Coefficients[groups.size()];
    for (int i = 0; i < cs.length; i++) {
      double glr = lr * groups.get(i).lrScale();
      double wd = groups.get(i).decay() ? weightDecay : 0;
      cs[i] = sgd ? new Coefficients(scale, clip, 0, 0, 0, 0, (float) glr, (float) wd, 0, 0)
          : new Coefficients(scale, clip, (float) (1 - glr * wd), (float) (1 - beta1), (float) beta2, (float) (1 - beta2),
              (float) (glr / (1 - Math.pow(beta1, t))), 0, (float) Math.sqrt(1 - Math.pow(beta2, t)), (float) eps);
    }
    Kernels.chunks(p.length, (from, to) -> {
      for (int gi = firstGroup(from); gi < groups.size() && groups.get(gi).from() < to; gi++) {
        if (groups.get(gi).lrScale() == 0) {
          continue; // frozen
        }
        int a = Math.max(from, groups.get(gi).from());
        int b = Math.min(to, groups.get(gi).to());
        if (sgd) {
          sgd(p, sum, cs[gi], a, b);
        } else {
          adamw(p, sum, m, v, cs[gi], a, b);
        }
      }
    });
  }

  /** The group holding value i (groups tile the buffer in order). */
  private int firstGroup(int i) {
    int lo = 0;
    int hi = groups.size() - 1;
    while (lo < hi) {
      int mid = (lo + hi + 1) >>> 1;
      if (groups.get(mid).from() <= i) {
        lo = mid;
      } else {
        hi = mid - 1;
      }
    }
    return lo;
  }

  /** The per-step constants, in fp32 as the kernels use them. */
  private record Coefficients(float scale, float clip, float decay, float oneMinusBeta1, float beta2, float oneMinusBeta2, float stepSize,
      float weightDecay, float bc2Sqrt, float eps) {}

  private static void adamw(float[] p, float[] s, float[] m, float[] v, Coefficients c, int from, int to) {
    float negStep = -c.stepSize();
    int i = from;
    for (int end = from + F.loopBound(to - from); i < end; i += F.length()) {
      FloatVector g = FloatVector.fromArray(F, s, i).mul(c.scale()).mul(c.clip());
      FloatVector pv = FloatVector.fromArray(F, p, i).mul(c.decay());
      FloatVector mv = FloatVector.fromArray(F, m, i);
      mv = mv.add(g.sub(mv).mul(c.oneMinusBeta1()));
      FloatVector vv = FloatVector.fromArray(F, v, i).mul(c.beta2()).add(g.mul(c.oneMinusBeta2()).mul(g));
      FloatVector denom = vv.sqrt().div(c.bc2Sqrt()).add(c.eps());
      pv = pv.add(mv.mul(negStep).div(denom));
      pv.intoArray(p, i);
      mv.intoArray(m, i);
      vv.intoArray(v, i);
    }
    for (; i < to; i++) {
      float g = s[i] * c.scale() * c.clip();
      float pi = p[i] * c.decay();
      float mi = m[i] + (g - m[i]) * c.oneMinusBeta1();
      float vi = v[i] * c.beta2() + g * c.oneMinusBeta2() * g;
      float denom = (float) Math.sqrt(vi) / c.bc2Sqrt() + c.eps();
      p[i] = pi + mi * negStep / denom;
      m[i] = mi;
      v[i] = vi;
    }
  }

  private static void sgd(float[] p, float[] s, Coefficients c, int from, int to) {
    int i = from;
    for (int end = from + F.loopBound(to - from); i < end; i += F.length()) {
      FloatVector g = FloatVector.fromArray(F, s, i).mul(c.scale()).mul(c.clip());
      FloatVector pv = FloatVector.fromArray(F, p, i);
      pv.sub(g.add(pv.mul(c.weightDecay())).mul(c.stepSize())).intoArray(p, i);
    }
    for (; i < to; i++) {
      float g = s[i] * c.scale() * c.clip();
      p[i] = p[i] - (g + p[i] * c.weightDecay()) * c.stepSize();
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

  /**
   * The factor torch.nn.utils.clip_grad_norm_ multiplies the gradient by when its global L2 norm is
   * {@code norm}: {@code maxNorm/(norm + 1e-6)} above maxNorm, else 1 (and 1 when maxNorm is 0).
   */
  public static float clipCoefficient(double norm, double maxNorm) {
    return maxNorm > 0 && norm > maxNorm ? (float) (maxNorm / (norm + 1e-6)) : 1f;
  }

  /** Scales g so its global L2 norm is at most maxNorm (torch.nn.utils.clip_grad_norm_); returns the norm before. */
  public static double clipByGlobalNorm(float[] g, double maxNorm) {
    double norm = Math.sqrt(Kernels.sumSquares(g));
    float c = clipCoefficient(norm, maxNorm);
    if (c != 1f) {
      Kernels.chunks(g.length, (from, to) -> Kernels.scale(g, c, from, to));
    }
    return norm;
  }
}
