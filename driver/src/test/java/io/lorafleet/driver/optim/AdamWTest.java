package io.lorafleet.driver.optim;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.util.Random;
import org.junit.jupiter.api.Test;

class AdamWTest {
  static float[] floats(JsonNode a) {
    float[] v = new float[a.size()];
    for (int i = 0; i < v.length; i++) {
      v[i] = (float) a.get(i).asDouble();
    }
    return v;
  }

  /** torch.optim.AdamW and SGD, 4 steps in fp32 (driver/src/test/python/adamw_reference.py). */
  @Test
  void matchesTorchOptim() throws Exception {
    JsonNode ref = new ObjectMapper().readTree(getClass().getResourceAsStream("/adamw-reference.json"));
    for (String kind : new String[] {"adamw", "sgd"}) {
      JsonNode c = ref.get(kind);
      float[] p = floats(c.get("init"));
      AdamW opt = kind.equals("adamw") ? new AdamW(p.length, c.get("beta1").asDouble(), c.get("beta2").asDouble(), c.get("eps").asDouble(),
          c.get("weight_decay").asDouble(), false) : new AdamW(p.length, 0.9, 0.999, 1e-8, c.get("weight_decay").asDouble(), true);
      for (int s = 0; s < c.get("after").size(); s++) {
        opt.step(p, floats(c.get("grads").get(s)), c.get("lrs").get(s).asDouble());
        float[] want = floats(c.get("after").get(s));
        for (int i = 0; i < p.length; i++) {
          // torch's vectorized CPU kernels may fuse multiply-adds; a few float ulps of the parameter
          assertEquals(want[i], p[i], 4 * Math.ulp(want[i]), kind + " step " + (s + 1) + " value " + i);
        }
      }
    }
  }

  /** What one lane computes, written out as plain scalar code: the vector kernel and any split over threads must give exactly this. */
  static void scalarStep(float[] p, float[] s, float[] m, float[] v, float scale, float clip, double lr, long t, double b1, double b2, double eps,
      double wd) {
    float decay = (float) (1 - lr * wd);
    float negStep = -(float) (lr / (1 - Math.pow(b1, t)));
    float bc2 = (float) Math.sqrt(1 - Math.pow(b2, t));
    for (int i = 0; i < p.length; i++) {
      float g = s[i] * scale * clip;
      float pi = p[i] * decay;
      m[i] = m[i] + (g - m[i]) * (float) (1 - b1);
      v[i] = v[i] * (float) b2 + g * (float) (1 - b2) * g;
      p[i] = pi + m[i] * negStep / ((float) Math.sqrt(v[i]) / bc2 + (float) eps);
    }
  }

  @Test
  void vectorLanesAndThreadsChangeNoBit() {
    int n = 3 * io.lorafleet.driver.kernels.Kernels.TASK + 13; // several parallel tasks and a scalar tail
    Random rnd = new Random(3);
    float[] p = new float[n];
    float[] q = new float[n];
    for (int i = 0; i < n; i++) {
      p[i] = q[i] = (float) rnd.nextGaussian();
    }
    AdamW opt = new AdamW(n, 0.9, 0.999, 1e-8, 0.01, false);
    float[] m = new float[n];
    float[] v = new float[n];
    for (int t = 1; t <= 3; t++) {
      float[] sum = new float[n];
      for (int i = 0; i < n; i++) {
        sum[i] = (float) (rnd.nextGaussian() * 50);
      }
      float scale = 1f / 48;
      float clip = t == 2 ? 0.37f : 1f;
      opt.step(p, sum, scale, clip, 1e-3);
      scalarStep(q, sum, m, v, scale, clip, 1e-3, t, 0.9, 0.999, 1e-8, 0.01);
      assertArrayEquals(q, p, 0f, "step " + t);
      assertArrayEquals(m, opt.firstMoment(), 0f);
      assertArrayEquals(v, opt.secondMoment(), 0f);
    }
  }

  @Test
  void clippingFollowsTorch() {
    float[] g = {3, 4};
    assertEquals(5.0, AdamW.clipByGlobalNorm(g, 1.0), 1e-12);
    assertEquals(1.0, Math.hypot(g[0], g[1]), 1e-6);
    assertEquals(1f, AdamW.clipCoefficient(0.5, 1.0));
    assertEquals(1f, AdamW.clipCoefficient(50, 0), "0 disables clipping");
    assertTrue(AdamW.clipCoefficient(2.0, 1.0) < 0.5f);
  }
  /** LoRA+: a group at 4 × lr without weight decay updates as its own AdamW would, bit for bit; the rest is untouched by the grouping. */
  @Test
  void parameterGroupsAreSeparateOptimizersOverOneBuffer() {
    int n = io.lorafleet.driver.kernels.Kernels.TASK + 1000; // the group boundary falls inside a parallel task
    int split = n - 777;
    Random rnd = new Random(8);
    float[] p = new float[n];
    for (int i = 0; i < n; i++) {
      p[i] = (float) rnd.nextGaussian();
    }
    float[] a = java.util.Arrays.copyOfRange(p, 0, split);
    float[] b = java.util.Arrays.copyOfRange(p, split, n);
    AdamW grouped = new AdamW(n, 0.9, 0.999, 1e-8, 0.1, false, java.util.List.of(new AdamW.Group(0, split, 1.0, true),
        new AdamW.Group(split, n, 4.0, false)));
    AdamW first = new AdamW(split, 0.9, 0.999, 1e-8, 0.1, false);
    AdamW second = new AdamW(n - split, 0.9, 0.999, 1e-8, 0.0, false);
    for (int t = 0; t < 3; t++) {
      float[] g = new float[n];
      for (int i = 0; i < n; i++) {
        g[i] = (float) rnd.nextGaussian();
      }
      grouped.step(p, g, 1e-3);
      first.step(a, java.util.Arrays.copyOfRange(g, 0, split), 1e-3);
      second.step(b, java.util.Arrays.copyOfRange(g, split, n), 4e-3);
    }
    assertArrayEquals(a, java.util.Arrays.copyOfRange(p, 0, split), 0f);
    assertArrayEquals(b, java.util.Arrays.copyOfRange(p, split, n), 0f);
    var e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
        () -> new AdamW(10, 0.9, 0.999, 1e-8, 0, false, java.util.List.of(new AdamW.Group(0, 4, 1, true), new AdamW.Group(5, 10, 1, true))));
    assertTrue(e.getMessage().contains("a group starts at 5, expected 4"), e.getMessage());
  }
}
