package io.lorafleet.worker;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.LinearSpec;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.ParamSpec;
import io.lorafleet.worker.model.TinyModelSpec;
import io.lorafleet.worker.safetensors.DType;
import io.lorafleet.worker.safetensors.Half;
import io.lorafleet.worker.safetensors.Tensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;

/**
 * GPTQ INT4 checkpoints of the tiny models, in AutoGPTQ's layout. The codes come from a plain
 * min-max quantizer per (group, output), not from GPTQ's error-compensating solver: any codes are a
 * valid checkpoint, and what is under test is how they are read.
 */
public final class QuantFixtures {
  private QuantFixtures() {}

  public static Path gptq(Path dir, TinyModelSpec spec, long seed, int groupSize, boolean descAct, boolean v2) throws Exception {
    return write(dir, spec.configJson(1, 2), TinyModels.tensors(spec, seed), seed, groupSize, descAct, v2);
  }

  /** A GPTQ copy of the full-precision model directory {@code src}, tokenizer files included. */
  public static Path gptq(Path src, Path dir, long seed, int groupSize, boolean descAct, boolean v2) throws Exception {
    io.lorafleet.worker.model.ModelSkeleton s = io.lorafleet.worker.model.ModelSkeleton.read(src);
    Map<String, Tensor> dense = new LinkedHashMap<>();
    for (ParamSpec p : s.params()) {
      dense.put(p.name(), s.hfTensor(p.name()));
    }
    write(dir, s.config().raw().deepCopy(), dense, seed, groupSize, descAct, v2);
    for (String f : ModelDirectory.TOKENIZER_FILES) {
      if (java.nio.file.Files.isRegularFile(src.resolve(f))) {
        java.nio.file.Files.copy(src.resolve(f), dir.resolve(f));
      }
    }
    return dir;
  }

  private static Path write(Path dir, ObjectNode config, Map<String, Tensor> dense, long seed, int groupSize, boolean descAct, boolean v2)
      throws Exception {
    Map<String, Tensor> out = new LinkedHashMap<>(dense);
    Random rng = new Random(seed);
    io.lorafleet.worker.model.ModelConfig mc = io.lorafleet.worker.model.ModelConfig.fromJson(config, dir.toString());
    try (LanguageModel m = LanguageModel.fromTensors(mc, dense, ai.djl.Device.cpu(), ai.djl.ndarray.types.DataType.FLOAT32)) {
      for (LinearSpec l : m.linears()) {
        if (!l.quantizable()) {
          continue;
        }
        ParamSpec p = m.paramSpec(l.weightKey()).orElseThrow();
        float[] hf = dense.get(l.weightKey()).toFloatArray();
        float[] w = p.transposed() ? hf : LanguageModel.transpose(hf, l.in(), l.out()); // [out, in]
        out.remove(l.weightKey());
        out.putAll(pack(l.name(), w, l.out(), l.in(), groupSize, descAct, v2, rng));
      }
    }
    ObjectNode q = config.putObject("quantization_config");
    q.put("quant_method", "gptq").put("bits", 4).put("group_size", groupSize).put("desc_act", descAct).put("sym", false)
        .put("checkpoint_format", v2 ? "gptq_v2" : "gptq");
    ModelDirectory.write(dir, config, out);
    return dir;
  }

  static Map<String, Tensor> pack(String prefix, float[] w, int outF, int inF, int groupSize, boolean descAct, boolean v2, Random rng) {
    int groups = groupSize == -1 ? 1 : inF / groupSize;
    int[] gIdx = new int[inF];
    int[] perm = new int[inF];
    for (int i = 0; i < inF; i++) {
      perm[i] = i;
    }
    for (int i = inF - 1; descAct && i > 0; i--) {
      int j = rng.nextInt(i + 1);
      int t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
    }
    for (int i = 0; i < inF; i++) {
      gIdx[i] = groupSize == -1 ? 0 : perm[i] / groupSize;
    }
    int[] qweight = new int[inF / 8 * outF];
    int[] qzeros = new int[groups * outF / 8];
    short[] scales = new short[groups * outF];
    for (int g = 0; g < groups; g++) {
      for (int o = 0; o < outF; o++) {
        float lo = 0;
        float hi = 0;
        for (int i = 0; i < inF; i++) {
          if (gIdx[i] == g) {
            lo = Math.min(lo, w[o * inF + i]);
            hi = Math.max(hi, w[o * inF + i]);
          }
        }
        float s = Half.f16ToFloat(Half.floatToF16((hi - lo) / 15f));
        int zero = Math.max(0, Math.min(15, Math.round(-lo / s)));
        scales[g * outF + o] = Half.floatToF16(s);
        int stored = v2 ? zero : (zero - 1) & 15; // v1 stores zero − 1, wrapping a zero of 0 to 15
        qzeros[g * (outF / 8) + o / 8] |= stored << (4 * (o % 8));
        for (int i = 0; i < inF; i++) {
          if (gIdx[i] == g) {
            int code = Math.max(0, Math.min(15, Math.round(w[o * inF + i] / s) + zero));
            qweight[(i / 8) * outF + o] |= code << (4 * (i % 8));
          }
        }
      }
    }
    Map<String, Tensor> t = new LinkedHashMap<>();
    t.put(prefix + ".qweight", ints(qweight, inF / 8, outF));
    t.put(prefix + ".qzeros", ints(qzeros, groups, outF / 8));
    ByteBuffer b = ByteBuffer.allocate(scales.length * 2).order(ByteOrder.LITTLE_ENDIAN);
    for (short s : scales) {
      b.putShort(s);
    }
    t.put(prefix + ".scales", new Tensor(DType.F16, new long[] {groups, outF}, b.array()));
    t.put(prefix + ".g_idx", ints(gIdx, inF));
    return t;
  }

  public static Tensor ints(int[] v, long... shape) {
    ByteBuffer b = ByteBuffer.allocate(v.length * 4).order(ByteOrder.LITTLE_ENDIAN);
    b.asIntBuffer().put(v);
    return new Tensor(DType.I32, shape, b.array());
  }
}
