package io.lorafleet.worker.quant;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.lorafleet.worker.safetensors.DType;
import io.lorafleet.worker.safetensors.Half;
import io.lorafleet.worker.safetensors.Tensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.Optional;
import java.util.function.Function;

/**
 * One INT4 GPTQ weight (Frantar et al. 2022, arXiv 2210.17323) as AutoGPTQ's QuantLinear saves it,
 * for a module p with W [out, in]:
 * <ul>
 *   <li>{@code p.qweight} I32 [in·bits/32, out]: 8 codes per int32 along the input dimension, least significant nibble first;
 *   <li>{@code p.qzeros} I32 [groups, out·bits/32]: the zero points packed along the output dimension, least significant first;
 *   <li>{@code p.scales} F16 [groups, out]; {@code p.g_idx} I32 [in], the group of each input column (i / group_size
 *       unless {@code desc_act} permuted the columns); an optional {@code p.bias}.
 * </ul>
 * W[o, i] = scales[g, o] · (q[i, o] − zero[g, o]) with g = g_idx[i], in fp16 as AutoGPTQ's torch
 * path computes it (an int times fp16 scales), where zero = z + 1 for the v1 "gptq" format (z the
 * stored nibble; no modulo, so a true zero of 0, stored as 15 after the wrap, dequantizes with 16:
 * the format's known defect, reproduced) and zero = z for {@code checkpoint_format: gptq_v2}.
 *
 * <p>Held here as codes [out, in] packed two a byte (first in the high nibble, as NF4), and the
 * effective zero and scale per (group, out) in fp32.
 */
public record GptqTensor(int out, int in, byte[] codes, int groups, float[] zeros, float[] scales, int[] gIdx) {
  /** The quantization_config fields of a GPTQ checkpoint that decide how its tensors read. */
  public record Config(int bits, int groupSize, boolean descAct, boolean sym, boolean v2) {
    public Config {
      if (bits != 4) {
        throw new IllegalArgumentException("quantization_config.bits is " + bits + ", expected 4 (only INT4 GPTQ is supported)");
      }
      if (groupSize != -1 && groupSize <= 0) {
        throw new IllegalArgumentException("quantization_config.group_size is " + groupSize + ", expected -1 (one group) or > 0");
      }
    }

    /** The number of groups over {@code in} input columns. */
    public int groups(int in) {
      return groupSize == -1 ? 1 : (in + groupSize - 1) / groupSize;
    }
  }

  public GptqTensor {
    if (codes.length != ((long) out * in + 1) / 2 || zeros.length != (long) groups * out || scales.length != (long) groups * out || gIdx.length != in) {
      throw new IllegalArgumentException("GPTQ weight [" + out + ", " + in + "] in " + groups + " groups has inconsistent parts");
    }
  }

  /** The code of W[o, i]. */
  public int code(int o, int i) {
    return Nf4.nibble(codes, (long) o * in + i);
  }

  /** The dequantized weight [out, in], row-major fp32 (each value rounded through fp16). */
  public float[] dequantize() {
    float[] w = new float[Math.toIntExact((long) out * in)];
    for (int o = 0; o < out; o++) {
      for (int i = 0; i < in; i++) {
        int g = gIdx[i];
        w[o * in + i] = Half.f16ToFloat(Half.floatToF16((code(o, i) - zeros[g * out + o]) * scales[g * out + o]));
      }
    }
    return w;
  }

  /** Reads module {@code prefix}'s tensors ("model.layers.0.mlp.down_proj") for a weight [out, in]. */
  public static GptqTensor fromTensors(String prefix, Function<String, Optional<Tensor>> get, int out, int in, Config cfg, String where) {
    if (in % 8 != 0 || out % 8 != 0) {
      throw new IllegalArgumentException(where + ": '" + prefix + "' is [" + out + ", " + in + "]; INT4 GPTQ packs 8 codes an int32, so both "
          + "dimensions must be multiples of 8");
    }
    int groups = cfg.groups(in);
    Tensor qweight = Nf4Tensor.require(get, prefix + ".qweight", where);
    Nf4Tensor.expect(qweight, DType.I32, new long[] {in / 8, out}, prefix + ".qweight", where);
    Tensor qzeros = Nf4Tensor.require(get, prefix + ".qzeros", where);
    Nf4Tensor.expect(qzeros, DType.I32, new long[] {groups, out / 8}, prefix + ".qzeros", where);
    Tensor scalesT = Nf4Tensor.require(get, prefix + ".scales", where);
    if (!scalesT.dtype().isFloat() || !Arrays.equals(scalesT.shape(), new long[] {groups, out})) {
      throw new IllegalArgumentException(where + ": tensor '" + prefix + ".scales' is " + scalesT.dtype() + " " + Arrays.toString(scalesT.shape())
          + ", expected F16 " + Arrays.toString(new long[] {groups, out}));
    }
    int[] gIdx = new int[in];
    Optional<Tensor> g = get.apply(prefix + ".g_idx");
    if (g.isPresent()) {
      Nf4Tensor.expect(g.get(), DType.I32, new long[] {in}, prefix + ".g_idx", where);
      gIdx = ints(g.get());
      for (int i = 0; i < in; i++) {
        if (gIdx[i] < 0 || gIdx[i] >= groups) {
          throw new IllegalArgumentException(where + ": '" + prefix + ".g_idx' holds " + gIdx[i] + " at column " + i + ", expected a group in [0, "
              + groups + ")");
        }
      }
    } else {
      for (int i = 0; i < in; i++) {
        gIdx[i] = cfg.groupSize() == -1 ? 0 : i / cfg.groupSize();
      }
    }
    int[] qw = ints(qweight);
    byte[] codes = new byte[Math.toIntExact(((long) out * in + 1) / 2)];
    for (int i = 0; i < in; i++) {
      int shift = 4 * (i % 8);
      int row = (i / 8) * out;
      for (int o = 0; o < out; o++) {
        int q = qw[row + o] >>> shift & 15;
        long e = (long) o * in + i;
        int at = (int) (e >>> 1);
        codes[at] = (byte) ((e & 1) == 0 ? (codes[at] & 0x0f) | q << 4 : (codes[at] & 0xf0) | q);
      }
    }
    int[] qz = ints(qzeros);
    float[] zeros = new float[groups * out];
    for (int gr = 0; gr < groups; gr++) {
      for (int o = 0; o < out; o++) {
        int z = qz[gr * (out / 8) + o / 8] >>> (4 * (o % 8)) & 15;
        zeros[gr * out + o] = cfg.v2() ? z : z + 1; // v1 stores zero − 1; + 1 without a modulo, as AutoGPTQ
      }
    }
    return new GptqTensor(out, in, codes, groups, zeros, scalesT.toFloatArray(), gIdx);
  }

  private static int[] ints(Tensor t) {
    int[] v = new int[Math.toIntExact(t.numel())];
    ByteBuffer.wrap(t.data()).order(ByteOrder.LITTLE_ENDIAN).asIntBuffer().get(v);
    return v;
  }

  /** Device form: the codes at 4 bits, (zero, scale) per (out, group) in fp32, and g_idx. */
  public QuantizedLinear upload(NDManager m) {
    NDArray packed = m.create(ByteBuffer.wrap(codes), new Shape(codes.length), DataType.UINT8);
    float[] nibbles = new float[16];
    for (int i = 0; i < 16; i++) {
      nibbles[i] = i;
    }
    NDArray lut = m.create(Nf4Tensor.pairTable(nibbles), new Shape(256, 2));
    float[] zs = new float[2 * groups * out]; // row o * groups + g: (zero, scale)
    for (int g = 0; g < groups; g++) {
      for (int o = 0; o < out; o++) {
        zs[2 * (o * groups + g)] = zeros[g * out + o];
        zs[2 * (o * groups + g) + 1] = scales[g * out + o];
      }
    }
    NDArray table = m.create(zs, new Shape((long) groups * out, 2));
    long[] rowBase = new long[out];
    for (int o = 0; o < out; o++) {
      rowBase[o] = (long) o * groups;
    }
    NDArray rows = m.create(rowBase, new Shape(out, 1));
    NDArray cols = m.create(Arrays.stream(gIdx).asLongStream().toArray(), new Shape(1, in));
    long n = (long) out * in;
    long bytes = codes.length + 4L * (lut.size() + table.size()) + 8L * (out + in);
    return QuantizedLinear.of(bytes, tmp -> {
      NDArray q = Nf4Tensor.lookup(tmp, packed, lut);
      q = (q.size() == n ? q : q.get("0:" + n)).reshape(out, in);
      NDArray idx = rows.add(cols); // (out, in): row o·groups + g_idx[i] of the (zero, scale) table
      idx.attach(tmp);
      NDArray zsAt = idx.getNDArrayInternal().embedding(idx, table, ai.djl.ndarray.types.SparseFormat.DENSE).singletonOrThrow(); // (out, in, 2)
      return q.sub(zsAt.get(":, :, 0")).mul(zsAt.get(":, :, 1")).toType(DataType.FLOAT16, false); // AutoGPTQ's product is an fp16 one
    });
  }
}
