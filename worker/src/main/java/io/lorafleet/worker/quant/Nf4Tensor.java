package io.lorafleet.worker.quant;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.worker.safetensors.DType;
import io.lorafleet.worker.safetensors.Tensor;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;
import java.util.function.Function;

/**
 * One weight [out, in] in bitsandbytes' NF4 form, as Linear4bit saves it: row-major values in
 * blocks of {@code blocksize}, two 4-bit codes a byte (first in the high nibble), one absmax per
 * block, and the 16-entry code table. With double quantization (QLoRA section 3) the absmax values
 * are themselves stored as 8-bit dynamic codes of (absmax − offset) in blocks of 256, with one fp32
 * absmax per 256-block: 4 + 8/64 + 32/(64·256) ≈ 4.127 bits per parameter.
 *
 * <p>On disk, for a module p (bitsandbytes QuantState.as_dict(packed=True)):
 * {@code p.weight} U8 [ceil(n/2), 1], {@code p.weight.absmax} (U8 nested, F32 plain) [blocks],
 * {@code p.weight.quant_map} F32 [16], {@code p.weight.nested_absmax} F32, {@code p.weight.nested_quant_map}
 * F32 [256], and {@code p.weight.quant_state.bitsandbytes__nf4}, the UTF-8 JSON of quant_type,
 * blocksize, dtype, shape, nested_blocksize, nested_dtype and nested_offset.
 */
public record Nf4Tensor(long[] shape, int blocksize, byte[] packed, float[] quantMap, Absmax absmax, String dtype) {
  public static final String STATE_KEY = ".quant_state.bitsandbytes__nf4";

  /** The per-block absmax values, plain or double-quantized. */
  public sealed interface Absmax permits Plain, Nested {
    int blocks();

    /** The fp32 absmax of every block. */
    float[] values();
  }

  public record Plain(float[] absmax) implements Absmax {
    @Override
    public int blocks() {
      return absmax.length;
    }

    @Override
    public float[] values() {
      return absmax.clone();
    }
  }

  /** absmax_i = code[q_i] · nestedAbsmax[i / nestedBlocksize] + offset, in fp32 (bitsandbytes' dequantize_blockwise, then + offset). */
  public record Nested(byte[] codes, float[] nestedAbsmax, float[] code, int nestedBlocksize, float offset) implements Absmax {
    @Override
    public int blocks() {
      return codes.length;
    }

    @Override
    public float[] values() {
      float[] out = new float[codes.length];
      for (int i = 0; i < out.length; i++) {
        out[i] = code[codes[i] & 0xff] * nestedAbsmax[i / nestedBlocksize] + offset;
      }
      return out;
    }
  }

  public Nf4Tensor {
    shape = shape.clone();
    long n = numel(shape);
    if (blocksize <= 0 || blocksize % 2 != 0) {
      throw new IllegalArgumentException("NF4 blocksize must be even and > 0 but found " + blocksize);
    }
    if (packed.length != (n + 1) / 2) {
      throw new IllegalArgumentException("NF4 weight of shape " + Arrays.toString(shape) + " needs " + (n + 1) / 2 + " packed bytes but found "
          + packed.length);
    }
    if (absmax.blocks() != (n + blocksize - 1) / blocksize) {
      throw new IllegalArgumentException("NF4 weight of shape " + Arrays.toString(shape) + " in blocks of " + blocksize + " needs "
          + (n + blocksize - 1) / blocksize + " absmax values but found " + absmax.blocks());
    }
    if (quantMap.length != 16) {
      throw new IllegalArgumentException("an NF4 quant_map has 16 entries but found " + quantMap.length);
    }
  }

  @Override
  public long[] shape() {
    return shape.clone();
  }

  public long numel() {
    return numel(shape);
  }

  private static long numel(long[] shape) {
    long n = 1;
    for (long d : shape) {
      n *= d;
    }
    return n;
  }

  public boolean doubleQuant() {
    return absmax instanceof Nested;
  }

  /** Quantizes row-major values of {@code shape} as bitsandbytes' quantize_4bit(quant_type="nf4") does. */
  public static Nf4Tensor quantize(float[] values, long[] shape, boolean doubleQuant, String dtype) {
    if (values.length != numel(shape)) {
      throw new IllegalArgumentException("expected " + numel(shape) + " values for shape " + Arrays.toString(shape) + " but found " + values.length);
    }
    Nf4.Blockwise q = Nf4.quantize(values, Nf4.CODE, Nf4.BLOCKSIZE);
    return new Nf4Tensor(shape, Nf4.BLOCKSIZE, Nf4.pack(q.codes()), Nf4.CODE.clone(), doubleQuant ? nested(q.absmax()) : new Plain(q.absmax()), dtype);
  }

  /**
   * Double quantization as bitsandbytes' quantize_4bit(compress_statistics=True): offset =
   * mean(absmax) (summed in float64, rounded to fp32), then quantize_blockwise(absmax − offset,
   * blocksize=256) with the signed dynamic map.
   */
  static Nested nested(float[] absmax) {
    double sum = 0;
    for (float a : absmax) {
      sum += a;
    }
    float offset = (float) (sum / absmax.length);
    float[] centred = new float[absmax.length];
    for (int i = 0; i < centred.length; i++) {
      centred[i] = absmax[i] - offset;
    }
    float[] code = Nf4.dynamicMap();
    Nf4.Blockwise q = Nf4.quantize(centred, code, Nf4.NESTED_BLOCKSIZE);
    return new Nested(q.codes(), q.absmax(), code, Nf4.NESTED_BLOCKSIZE, offset);
  }

  /** The dequantized values, row-major fp32: quant_map[nibble] · absmax[i / blocksize] (bitsandbytes' dequantize_4bit). */
  public float[] dequantize() {
    float[] a = absmax.values();
    float[] out = new float[Math.toIntExact(numel())];
    for (int i = 0; i < out.length; i++) {
      out[i] = quantMap[Nf4.nibble(packed, i)] * a[i / blocksize];
    }
    return out;
  }

  /** Bytes of the stored form: packed codes, absmax values and tables. */
  public long bytes() {
    long b = packed.length + 16 * 4L;
    if (absmax instanceof Nested n) {
      return b + n.codes().length + 4L * n.nestedAbsmax().length + 4L * n.code().length + 4;
    }
    return b + 4L * absmax.blocks();
  }

  private static final ObjectMapper JSON = new ObjectMapper();

  /** The tensors Linear4bit saves for a weight named {@code key} ("model.layers.0.self_attn.q_proj.weight"). */
  public Map<String, Tensor> toTensors(String key) {
    Map<String, Tensor> out = new LinkedHashMap<>();
    out.put(key, new Tensor(DType.U8, new long[] {packed.length, 1}, packed));
    ObjectNode state = JSON.createObjectNode();
    state.put("quant_type", "nf4").put("blocksize", blocksize).put("dtype", dtype);
    state.putArray("shape").add(shape[0]).add(shape[1]);
    if (absmax instanceof Nested n) {
      out.put(key + ".absmax", new Tensor(DType.U8, new long[] {n.codes().length}, n.codes()));
      out.put(key + ".quant_map", floats(quantMap));
      out.put(key + ".nested_absmax", floats(n.nestedAbsmax()));
      out.put(key + ".nested_quant_map", floats(n.code()));
      state.put("nested_blocksize", n.nestedBlocksize()).put("nested_dtype", "float32").put("nested_offset", (double) n.offset());
    } else {
      out.put(key + ".absmax", floats(absmax.values()));
      out.put(key + ".quant_map", floats(quantMap));
    }
    byte[] json = state.toString().getBytes(StandardCharsets.UTF_8);
    out.put(key + STATE_KEY, new Tensor(DType.U8, new long[] {json.length}, json));
    return out;
  }

  private static Tensor floats(float[] v) {
    return Tensor.ofFloats(v, v.length);
  }

  /**
   * Reads the tensors of weight {@code key} (see the class comment) through {@code get}, checking
   * every one against {@code expectedShape} [out, in]; {@code where} names the checkpoint in errors.
   */
  public static Nf4Tensor fromTensors(String key, Function<String, Optional<Tensor>> get, long[] expectedShape, String where) {
    Tensor stateT = require(get, key + STATE_KEY, where);
    JsonNode state;
    try {
      state = JSON.readTree(new String(stateT.data(), StandardCharsets.UTF_8));
    } catch (java.io.IOException e) {
      throw new IllegalArgumentException(where + ": tensor '" + key + STATE_KEY + "' is not UTF-8 JSON: " + e.getMessage(), e);
    }
    String type = state.path("quant_type").asText("");
    if (!type.equals("nf4")) {
      throw new IllegalArgumentException(where + ": '" + key + STATE_KEY + "' has quant_type '" + type + "', expected nf4 (fp4 is not supported)");
    }
    long[] shape = new long[state.path("shape").size()];
    for (int i = 0; i < shape.length; i++) {
      shape[i] = state.path("shape").get(i).asLong();
    }
    if (!Arrays.equals(shape, expectedShape)) {
      throw new IllegalArgumentException(where + ": '" + key + STATE_KEY + "' has shape " + Arrays.toString(shape) + " but config.json implies "
          + Arrays.toString(expectedShape));
    }
    int blocksize = state.path("blocksize").asInt(0);
    long n = numel(shape);
    Tensor w = require(get, key, where);
    expect(w, DType.U8, new long[] {(n + 1) / 2, 1}, key, where);
    Tensor mapT = require(get, key + ".quant_map", where);
    expect(mapT, DType.F32, new long[] {16}, key + ".quant_map", where);
    if (blocksize <= 0 || blocksize % 2 != 0) {
      throw new IllegalArgumentException(where + ": '" + key + STATE_KEY + "' has blocksize " + state.get("blocksize") + ", expected an even number > 0");
    }
    long blocks = (n + blocksize - 1) / blocksize;
    Tensor am = require(get, key + ".absmax", where);
    Absmax absmax;
    if (get.apply(key + ".nested_absmax").isPresent()) {
      int nb = state.path("nested_blocksize").asInt(0);
      if (nb <= 0 || !state.path("nested_offset").isNumber()) {
        throw new IllegalArgumentException(where + ": '" + key + STATE_KEY + "' needs nested_blocksize > 0 and a numeric nested_offset under double "
            + "quantization but found " + state.get("nested_blocksize") + " and " + state.get("nested_offset"));
      }
      expect(am, DType.U8, new long[] {blocks}, key + ".absmax", where);
      Tensor nAbs = require(get, key + ".nested_absmax", where);
      expect(nAbs, DType.F32, new long[] {(blocks + nb - 1) / nb}, key + ".nested_absmax", where);
      Tensor nMap = require(get, key + ".nested_quant_map", where);
      expect(nMap, DType.F32, new long[] {256}, key + ".nested_quant_map", where);
      absmax = new Nested(am.data(), nAbs.toFloatArray(), nMap.toFloatArray(), nb, (float) state.get("nested_offset").asDouble());
    } else {
      expect(am, DType.F32, new long[] {blocks}, key + ".absmax", where);
      absmax = new Plain(am.toFloatArray());
    }
    return new Nf4Tensor(shape, blocksize, w.data(), mapT.toFloatArray(), absmax, state.path("dtype").asText("float32"));
  }

  static Tensor require(Function<String, Optional<Tensor>> get, String key, String where) {
    return get.apply(key).orElseThrow(() -> new IllegalArgumentException(where + ": missing tensor '" + key + "' of a quantized weight"));
  }

  static void expect(Tensor t, DType dtype, long[] shape, String key, String where) {
    if (t.dtype() != dtype || !Arrays.equals(t.shape(), shape)) {
      throw new IllegalArgumentException(where + ": tensor '" + key + "' is " + t.dtype() + " " + Arrays.toString(t.shape()) + ", expected " + dtype
          + " " + Arrays.toString(shape));
    }
  }

  /** The device form: the packed codes and absmax codes stay 4 and 8 bits; values are made one projection at a time. */
  public QuantizedLinear upload(NDManager m) {
    long n = numel();
    int blocks = absmax.blocks();
    byte[] padded = Arrays.copyOf(packed, blocks * blocksize / 2); // whole blocks, so that values reshape to (blocks, blocksize)
    NDArray codes = m.create(java.nio.ByteBuffer.wrap(padded), new Shape(padded.length), DataType.UINT8);
    NDArray lut = m.create(pairTable(quantMap), new Shape(256, 2));
    Function<NDManager, NDArray> scales; // (blocks, 1) fp32
    long bytes = padded.length + lut.size() * 4;
    if (absmax instanceof Nested nq) {
      int nb = nq.nestedBlocksize();
      int groups = nq.nestedAbsmax().length;
      byte[] q2 = Arrays.copyOf(nq.codes(), groups * nb);
      NDArray q2a = m.create(java.nio.ByteBuffer.wrap(q2), new Shape(q2.length), DataType.UINT8);
      NDArray code2 = m.create(nq.code(), new Shape(256, 1));
      NDArray abs2 = m.create(nq.nestedAbsmax(), new Shape(groups, 1));
      float offset = nq.offset();
      bytes += q2.length + 4L * (256 + groups);
      scales = s -> lookup(s, q2a, code2).reshape(groups, nb).mul(abs2).reshape(-1).get("0:" + blocks).add(offset).reshape(blocks, 1);
    } else {
      NDArray a = m.create(absmax.values(), new Shape(blocks, 1));
      bytes += 4L * blocks;
      scales = s -> a;
    }
    long out = shape[0];
    long in = shape[1];
    return QuantizedLinear.of(bytes, tmp -> {
      NDArray w = lookup(tmp, codes, lut).reshape(blocks, blocksize).mul(scales.apply(tmp)).reshape(-1);
      return (w.size() == n ? w : w.get("0:" + n)).reshape(out, in);
    });
  }

  /** For each byte b: (table[b >> 4], table[b & 15]), so one lookup decodes both nibbles in packing order. */
  static float[] pairTable(float[] table) {
    float[] t = new float[512];
    for (int b = 0; b < 256; b++) {
      t[2 * b] = table[b >>> 4];
      t[2 * b + 1] = table[b & 15];
    }
    return t;
  }

  /**
   * table[codes] for uint8 codes through torch.embedding: (n) → (n, table columns), flattened to
   * (n · columns), in {@code scope} (a result takes its first operand's manager, here the model's).
   */
  static NDArray lookup(NDManager scope, NDArray codes, NDArray table) {
    NDArray ids = codes.toType(DataType.INT64, true);
    ids.attach(scope);
    NDArray rows = ids.getNDArrayInternal().embedding(ids, table, ai.djl.ndarray.types.SparseFormat.DENSE).singletonOrThrow();
    return rows.reshape(-1);
  }
}
