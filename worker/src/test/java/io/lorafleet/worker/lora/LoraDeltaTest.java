package io.lorafleet.worker.lora;

import static org.junit.jupiter.api.Assertions.assertEquals;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.lorafleet.worker.model.Djl;
import io.lorafleet.worker.model.Dropout;
import io.lorafleet.worker.model.LinearSpec;
import java.util.Map;
import java.util.Optional;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * DoRA's term on one projection, written out in plain arithmetic from PEFT's DoraLinearLayer.forward,
 * with and without dropout: y + (g − 1)·base + g·s·(x_d·Aᵀ)·Bᵀ, g = m/n, where base is y − b without
 * dropout and x_d·W0 (no bias) with it.
 */
class LoraDeltaTest {
  static final int IN = 3;
  static final int OUT = 2;
  static final int R = 2;
  static final double S = 1.5;
  static final double P = 0.5;
  static final long SEED = 9;

  @Test
  void doraMatchesPeftsFormulaWithAndWithoutDropout() {
    Random rnd = new Random(1);
    float[] x = rand(rnd, 4 * IN); // (4, in)
    float[] w = rand(rnd, IN * OUT); // (in, out), the compute layout
    float[] bias = rand(rnd, OUT);
    float[] a = rand(rnd, R * IN);
    float[] b = rand(rnd, OUT * R);
    float[] m = {1.3f, 0.7f};
    float[] n = {2.0f, 0.9f};
    try (NDManager mg = Djl.newManager(Device.cpu(), "dora-test")) {
      NDArray xa = mg.create(x, new Shape(4, IN));
      NDArray wa = mg.create(w, new Shape(IN, OUT));
      NDArray ba = mg.create(bias, new Shape(OUT));
      NDArray y = xa.matMul(wa).add(ba);
      LinearSpec spec = new LinearSpec("layer.proj", 0, IN, OUT, true);
      var dora = new LoraDelta.Dora(mg.create(m, new Shape(OUT)), mg.create(n, new Shape(OUT)), wa, Optional.of(ba));
      var f = new LoraDelta.Factors(mg.create(a, new Shape(R, IN)), mg.create(b, new Shape(OUT, R)), S, 0, dora);
      for (boolean dropout : new boolean[] {false, true}) {
        Dropout masks = dropout ? new Dropout(SEED, new long[] {0, 1, 2, 3}, false)
            : Dropout.OFF;
        LoraDelta delta = new LoraDelta(mg, Map.of(spec.name(), f), Map.of(), dropout ? P : 0, masks);
        float[] got = delta.addTo(spec, xa, y).toFloatArray();
        // the mask Dropout draws for module index 0 over these 4 rows: 0 or 1/(1 − p)
        float[] mask = dropout ? masks.mask(new long[] {4, IN}, 0, P) : null;
        double[] xd = new double[x.length];
        for (int i = 0; i < x.length; i++) {
          xd[i] = dropout ? (mask[i] == 0 ? 0 : x[i] / (1 - P)) : x[i];
        }
        for (int t = 0; t < 4; t++) {
          for (int o = 0; o < OUT; o++) {
            double yo = bias[o];
            double baseNoDrop = 0;
            double baseDrop = 0;
            for (int i = 0; i < IN; i++) {
              yo += (double) x[t * IN + i] * w[i * OUT + o];
              baseDrop += xd[t * IN + i] * w[i * OUT + o];
            }
            baseNoDrop = yo - bias[o];
            double lora = 0;
            for (int k = 0; k < R; k++) {
              double xak = 0;
              for (int i = 0; i < IN; i++) {
                xak += xd[t * IN + i] * a[k * IN + i];
              }
              lora += xak * b[o * R + k];
            }
            double g = m[o] / n[o];
            double want = yo + (g - 1) * (dropout ? baseDrop : baseNoDrop) + g * S * lora;
            assertEquals(want, got[t * OUT + o], 1e-5, (dropout ? "dropout" : "no dropout") + " row " + t + " out " + o);
          }
        }
      }
    }
  }

  static float[] rand(Random r, int n) {
    float[] v = new float[n];
    for (int i = 0; i < n; i++) {
      v[i] = (float) r.nextGaussian();
    }
    return v;
  }
}
