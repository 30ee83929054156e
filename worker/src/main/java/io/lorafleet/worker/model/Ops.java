package io.lorafleet.worker.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.Activation;
import java.util.Optional;

/**
 * The tensor functions both decoders compose. DJL's PyTorch engine has no fused attention, so
 * attention is spelled out. Every function takes the activation as its first operand so that
 * results land in the activation's (the step's) NDManager.
 */
public final class Ops {
  /**
   * Mask value for disallowed attention: exp() of it underflows to 0 in fp32 and fp64; in fp16 it
   * rounds to −inf, which softmax also maps to 0 since every query keeps one allowed key (itself).
   */
  static final double MASKED = -1e9;

  private Ops() {}

  /**
   * A 0-d constant owned by {@code like}'s manager, in its dtype. Never use DJL's Number overloads
   * (mul(Number), div(Number), pow(Number)) where autograd may save the operand: they wrap the
   * number in a tensor over a direct buffer and close it as soon as the op returns, while autograd
   * keeps the tensor for the backward pass; once the garbage collector frees that buffer, the
   * gradient reads freed memory (seen as NaN or run-to-run differences under GC pressure). A
   * constant made here lives until the step's manager closes. add(Number) and sub(Number) are
   * safe: their backward passes save nothing.
   */
  public static NDArray constant(NDArray like, double v) {
    return like.getManager().create(v).toType(like.getDataType(), false);
  }

  /**
   * x in dtype {@code to}, recorded by autograd; x itself when it has that dtype. DJL's toType
   * detaches its result from the graph (a backward pass through it fails), so the cast goes through
   * torch.cumprod(x, dim, dtype) over a new axis of size 1: the identity, in the target dtype, with
   * a gradient.
   */
  public static NDArray cast(NDArray x, DataType to) {
    if (x.getDataType() == to) {
      return x;
    }
    NDArray e = x.expandDims(-1);
    return ai.djl.pytorch.jni.JniUtils.cumProd((ai.djl.pytorch.engine.PtNDArray) e, e.getShape().dimension() - 1, to).squeeze(-1);
  }

  /** fp16 widened to fp32 for reductions fp16 cannot carry (as transformers upcasts); other dtypes as they are. */
  public static NDArray wide(NDArray x) {
    return x.getDataType() == DataType.FLOAT16 ? cast(x, DataType.FLOAT32) : x;
  }

  /**
   * RMSNorm (Zhang & Sennrich 2019), as LlamaRMSNorm: w · x · rsqrt(mean(x²) + eps), normalised in
   * fp32 under fp16 compute. Multiplying by the (B, T, 1) reciprocal, as transformers does, keeps
   * the backward pass to two full-size products where a division needs four.
   */
  public static NDArray rmsNorm(NDArray x, NDArray w, double eps) {
    NDArray xf = wide(x);
    NDArray var = xf.square().mean(new int[] {-1}, true); // (B, T, 1)
    return cast(xf.mul(var.add(eps).pow(constant(var, -0.5))), x.getDataType()).mul(w);
  }

  /** LayerNorm over the last axis with biased variance, as torch.nn.LayerNorm (statistics in fp32 under fp16). */
  public static NDArray layerNorm(NDArray x, NDArray w, NDArray b, double eps) {
    NDArray xf = wide(x);
    NDArray xc = xf.sub(xf.mean(new int[] {-1}, true));
    NDArray var = xc.square().mean(new int[] {-1}, true);
    return cast(xc.div(var.add(eps).sqrt()), x.getDataType()).mul(w).add(b);
  }

  /** SiLU(x) = x·σ(x). */
  public static NDArray silu(NDArray x) {
    return x.mul(Activation.sigmoid(x));
  }

  /** GPT-2's gelu_new: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
  public static NDArray geluTanh(NDArray x) {
    NDArray inner = x.add(x.mul(x).mul(x).mul(constant(x, 0.044715))).mul(constant(x, Math.sqrt(2.0 / Math.PI)));
    return x.mul(inner.tanh().add(1)).mul(constant(x, 0.5));
  }

  /**
   * Scaled dot-product attention. q (B, nh, T, hd), k and v (B, nh, S, hd), mask additive and
   * broadcastable to (B, nh, T, S); {@code probs} is applied to the probabilities (B, nh, T, S):
   * training's attention dropout, or the identity. Returns (B, T, nh·hd).
   */
  public static NDArray attention(NDArray q, NDArray k, NDArray v, NDArray mask, java.util.function.UnaryOperator<NDArray> probs) {
    long hd = q.getShape().get(3);
    // scale q (B, nh, T, hd) rather than the scores (B, nh, T, S): the same product, a smaller pass
    NDArray scores = q.mul(constant(q, 1.0 / Math.sqrt(hd))).matMul(k.transpose(0, 1, 3, 2)).add(mask); // (B, nh, T, S)
    NDArray out = probs.apply(cast(wide(scores).softmax(-1), q.getDataType())).matMul(v); // (B, nh, T, hd); softmax in fp32 under fp16
    Shape s = out.getShape();
    return out.transpose(0, 2, 1, 3).reshape(s.get(0), s.get(2), s.get(1) * hd);
  }

  /** (B, T, n·hd) → (B, n, T, hd). */
  public static NDArray heads(NDArray x, int n, int hd) {
    Shape s = x.getShape();
    return x.reshape(s.get(0), s.get(1), n, hd).transpose(0, 2, 1, 3);
  }

  /** Grouped-query attention: (B, nkv, S, hd) → (B, nkv·rep, S, hd), each kv head repeated rep times. */
  public static NDArray repeatKv(NDArray x, int rep) {
    if (rep == 1) {
      return x;
    }
    Shape s = x.getShape();
    return x.expandDims(2).repeat(2, rep).reshape(s.get(0), s.get(1) * rep, s.get(2), s.get(3));
  }

  /**
   * Additive mask (B|1, 1, T, past+T): query i (absolute position past+i) may see key j iff
   * j ≤ past+i, and (with a sliding window w > 0) past+i − j &lt; w, and, for packed rows, both lie in
   * the same segment.
   */
  public static NDArray mask(NDManager m, int batch, int t, int past, Optional<int[][]> segments, int window, DataType dtype) {
    int s = past + t;
    int rows = segments.isPresent() ? batch : 1;
    float[] v = new float[rows * t * s];
    for (int b = 0; b < rows; b++) {
      for (int i = 0; i < t; i++) {
        for (int j = 0; j < s; j++) {
          boolean ok = j <= past + i && (window == 0 || past + i - j < window);
          if (ok && segments.isPresent()) {
            int[] seg = segments.get()[b];
            ok = seg[j] == seg[past + i];
          }
          v[(b * t + i) * s + j] = ok ? 0f : (float) MASKED;
        }
      }
    }
    return m.create(v, new Shape(rows, 1, t, s)).toType(dtype, false);
  }

  /**
   * Rows [r0, r1) of the training mask ({@link #mask} with no cache), (B|1, 1, r1 − r0, T): what a
   * block of queries needs, so blockwise attention never builds the T × T mask either.
   */
  public static NDArray maskRows(NDManager m, int batch, int t, int r0, int r1, Optional<int[][]> segments, int window, DataType dtype) {
    int rows = segments.isPresent() ? batch : 1;
    int n = r1 - r0;
    float[] v = new float[rows * n * t];
    for (int b = 0; b < rows; b++) {
      for (int i = r0; i < r1; i++) {
        for (int j = 0; j < t; j++) {
          boolean ok = j <= i && (window == 0 || i - j < window);
          if (ok && segments.isPresent()) {
            int[] seg = segments.get()[b];
            ok = seg[j] == seg[i];
          }
          v[(b * n + i - r0) * t + j] = ok ? 0f : (float) MASKED;
        }
      }
    }
    return m.create(v, new Shape(rows, 1, n, t)).toType(dtype, false);
  }

  /**
   * cos and signed sin tables (B, 1, T, hd) for HF's rotate-half RoPE: emb = cat(pos·inv, pos·inv);
   * the sin table carries rotate_half's sign, cat(−sin, sin), for {@link #rope}.
   */
  public static NDArray[] ropeTables(NDManager m, int[][] positions, double[] invFreq, double posScale, DataType dtype) {
    int b = positions.length;
    int t = positions[0].length;
    int half = invFreq.length;
    int hd = half * 2;
    float[] cos = new float[b * t * hd];
    float[] sin = new float[b * t * hd];
    for (int r = 0; r < b; r++) {
      for (int i = 0; i < t; i++) {
        double p = positions[r][i] * posScale;
        int base = (r * t + i) * hd;
        for (int f = 0; f < half; f++) {
          // transformers multiplies in fp32: round the frequency and the angle as it does
          float ang = (float) p * (float) invFreq[f];
          cos[base + f] = cos[base + f + half] = (float) Math.cos(ang);
          sin[base + f] = -(float) Math.sin(ang);
          sin[base + f + half] = (float) Math.sin(ang);
        }
      }
    }
    Shape shape = new Shape(b, 1, t, hd);
    return new NDArray[] {m.create(cos, shape).toType(dtype, false), m.create(sin, shape).toType(dtype, false)};
  }

  /**
   * x·cos + rotate_half(x)·sin, rotate_half(x) = cat(−x[..., hd/2:], x[..., :hd/2]) (HF's
   * apply_rotary_pos_emb). The halves are swapped by a flip of x viewed as (..., 2, hd/2), and the
   * sign lives in {@code signedSin}: slicing and concatenating would cost zero-filled gradients.
   */
  public static NDArray rope(NDArray x, NDArray cos, NDArray signedSin) {
    Shape s = x.getShape();
    long half = s.get(3) / 2;
    NDArray swapped = x.reshape(s.get(0), s.get(1), s.get(2), 2, half).flip(3).reshape(s); // cat(x2, x1)
    return x.mul(cos).add(swapped.mul(signedSin));
  }
}
