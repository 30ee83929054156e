package io.lorafleet.driver.average;

/**
 * Truncated SVD of a low-rank product ΔW = B·A (B out×R, A R×in) without forming ΔW: thin QR of B
 * and Aᵀ (modified Gram-Schmidt, twice for stability), SVD of the small R×R core by one-sided
 * Jacobi, then U = Q_B·U_c and V = Q_A·V_c. Everything in float64.
 */
final class LowRank {
  /** ΔW ≈ U·diag(s)·Vᵀ with U out×k, V in×k, singular values descending, and the full spectrum. */
  record Svd(double[][] u, double[] s, double[][] v, double[] spectrum) {}

  private LowRank() {}

  /** @param b out×R, @param a R×in (row-major 2-D arrays). */
  static Svd svd(double[][] b, double[][] a, int k) {
    int r = a.length;
    double[][] qb = new double[b.length][r];
    double[][] rb = qr(b, qb);
    double[][] at = transpose(a);
    double[][] qa = new double[at.length][r];
    double[][] ra = qr(at, qa);
    double[][] core = multiply(rb, transpose(ra)); // R×R: ΔW = Q_B·core·Q_Aᵀ
    double[][] uc = new double[r][r];
    double[][] vc = new double[r][r];
    double[] s = jacobi(core, uc, vc);
    return truncated(multiply(qb, uc), s, multiply(qa, vc), k);
  }

  /**
   * Truncated SVD of a dense matrix m (out×in): thin QR along its shorter side (m = Q·R, or mᵀ = Q·R
   * when in > out), one-sided Jacobi on the small square R, then U and V back from Q.
   */
  static Svd dense(double[][] m, int k) {
    boolean wide = m[0].length > m.length;
    double[][] x = wide ? transpose(m) : m; // tall: rows >= columns
    int n = x[0].length;
    double[][] q = new double[x.length][n];
    double[][] rr = qr(x, q);
    double[][] uc = new double[n][n];
    double[][] vc = new double[n][n];
    double[] s = jacobi(rr, uc, vc);
    double[][] left = multiply(q, uc); // x = left·diag(s)·vcᵀ
    return wide ? truncated(vc, s, left, k) : truncated(left, s, vc, k);
  }

  /** The first k singular triplets of u·diag(s)·vᵀ, with the whole spectrum. */
  private static Svd truncated(double[][] u, double[] s, double[][] v, int k) {
    int kk = Math.min(k, s.length);
    double[][] uk = new double[u.length][kk];
    double[][] vk = new double[v.length][kk];
    for (int i = 0; i < u.length; i++) {
      System.arraycopy(u[i], 0, uk[i], 0, kk);
    }
    for (int i = 0; i < v.length; i++) {
      System.arraycopy(v[i], 0, vk[i], 0, kk);
    }
    return new Svd(uk, java.util.Arrays.copyOf(s, kk), vk, s);
  }

  /** Thin QR by modified Gram-Schmidt with one re-orthogonalisation pass; fills q (m×n), returns R (n×n). */
  static double[][] qr(double[][] x, double[][] q) {
    int m = x.length;
    int n = x[0].length;
    double[][] rr = new double[n][n];
    for (int i = 0; i < m; i++) {
      System.arraycopy(x[i], 0, q[i], 0, n);
    }
    for (int j = 0; j < n; j++) {
      for (int pass = 0; pass < 2; pass++) {
        for (int p = 0; p < j; p++) {
          double d = 0;
          for (int i = 0; i < m; i++) {
            d += q[i][p] * q[i][j];
          }
          rr[p][j] += d;
          for (int i = 0; i < m; i++) {
            q[i][j] -= d * q[i][p];
          }
        }
      }
      double norm = 0;
      for (int i = 0; i < m; i++) {
        norm += q[i][j] * q[i][j];
      }
      norm = Math.sqrt(norm);
      rr[j][j] = norm;
      for (int i = 0; i < m; i++) {
        q[i][j] = norm > 1e-300 ? q[i][j] / norm : 0;
      }
    }
    return rr;
  }

  /** One-sided Jacobi SVD of a square matrix: m = U·diag(s)·Vᵀ, s descending. */
  static double[] jacobi(double[][] m, double[][] u, double[][] v) {
    int n = m.length;
    double[][] w = new double[n][n];
    for (int i = 0; i < n; i++) {
      System.arraycopy(m[i], 0, w[i], 0, n);
      v[i][i] = 1;
    }
    for (int sweep = 0; sweep < 60; sweep++) {
      double off = 0;
      for (int p = 0; p < n - 1; p++) {
        for (int q = p + 1; q < n; q++) {
          double alpha = 0;
          double beta = 0;
          double gamma = 0;
          for (int i = 0; i < n; i++) {
            alpha += w[i][p] * w[i][p];
            beta += w[i][q] * w[i][q];
            gamma += w[i][p] * w[i][q];
          }
          if (Math.abs(gamma) <= 1e-15 * Math.sqrt(alpha * beta) || gamma == 0) {
            continue;
          }
          off = Math.max(off, Math.abs(gamma) / Math.sqrt(alpha * beta));
          double zeta = (beta - alpha) / (2 * gamma);
          double t = Math.signum(zeta) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
          if (zeta == 0) {
            t = 1;
          }
          double c = 1 / Math.sqrt(1 + t * t);
          double s = c * t;
          for (int i = 0; i < n; i++) {
            double wp = w[i][p];
            double wq = w[i][q];
            w[i][p] = c * wp - s * wq;
            w[i][q] = s * wp + c * wq;
            double vp = v[i][p];
            double vq = v[i][q];
            v[i][p] = c * vp - s * vq;
            v[i][q] = s * vp + c * vq;
          }
        }
      }
      if (off < 1e-14) {
        break;
      }
    }
    double[] sv = new double[n];
    for (int j = 0; j < n; j++) {
      double norm = 0;
      for (int i = 0; i < n; i++) {
        norm += w[i][j] * w[i][j];
      }
      sv[j] = Math.sqrt(norm);
      for (int i = 0; i < n; i++) {
        u[i][j] = sv[j] > 1e-300 ? w[i][j] / sv[j] : 0;
      }
    }
    // sort descending
    Integer[] order = new Integer[n];
    for (int i = 0; i < n; i++) {
      order[i] = i;
    }
    java.util.Arrays.sort(order, (x, y) -> Double.compare(sv[y], sv[x]));
    double[] s2 = new double[n];
    double[][] u2 = new double[n][n];
    double[][] v2 = new double[n][n];
    for (int j = 0; j < n; j++) {
      s2[j] = sv[order[j]];
      for (int i = 0; i < n; i++) {
        u2[i][j] = u[i][order[j]];
        v2[i][j] = v[i][order[j]];
      }
    }
    for (int i = 0; i < n; i++) {
      System.arraycopy(u2[i], 0, u[i], 0, n);
      System.arraycopy(v2[i], 0, v[i], 0, n);
    }
    return s2;
  }

  static double[][] transpose(double[][] x) {
    double[][] t = new double[x[0].length][x.length];
    for (int i = 0; i < x.length; i++) {
      for (int j = 0; j < x[0].length; j++) {
        t[j][i] = x[i][j];
      }
    }
    return t;
  }

  static double[][] multiply(double[][] x, double[][] y) {
    int m = x.length;
    int k = y.length;
    int n = y[0].length;
    double[][] out = new double[m][n];
    for (int i = 0; i < m; i++) {
      for (int p = 0; p < k; p++) {
        double xv = x[i][p];
        if (xv == 0) {
          continue;
        }
        for (int j = 0; j < n; j++) {
          out[i][j] += xv * y[p][j];
        }
      }
    }
    return out;
  }
}
