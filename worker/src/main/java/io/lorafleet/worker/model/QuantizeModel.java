package io.lorafleet.worker.model;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.worker.quant.Nf4Tensor;
import io.lorafleet.worker.quant.QuantizedCheckpoint;
import io.lorafleet.worker.safetensors.SafetensorsWriter;
import io.lorafleet.worker.safetensors.Tensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * {@code lorafleet quantize}: a full-precision HF model directory rewritten in the layout that
 * transformers saves a bitsandbytes 4-bit model in (see {@link Nf4Tensor}); embeddings, norms,
 * biases and {@code lm_head} are copied as stored, and config.json gains quantization_config.
 */
public final class QuantizeModel {
  private QuantizeModel() {}

  /** Summary of a written checkpoint: how many weights were quantized and the bytes before and after. */
  public record Written(int quantizedTensors, long quantizedParams, long quantizedBytes, long otherBytes) {}

  public static Written write(Path src, Path out, boolean doubleQuant) throws IOException {
    ModelSkeleton skeleton = ModelSkeleton.read(src);
    if (skeleton.config().raw().hasNonNull("quantization_config")) {
      throw new IllegalArgumentException(src + "/config.json already has a quantization_config; expected a full-precision model");
    }
    Map<String, LinearSpec> quantizable = new HashMap<>();
    skeleton.linears().stream().filter(LinearSpec::quantizable).forEach(l -> quantizable.put(l.weightKey(), l));
    Map<String, Tensor> tensors = new LinkedHashMap<>();
    int count = 0;
    long params = 0;
    long qBytes = 0;
    long other = 0;
    String computeDtype = "float32";
    for (ParamSpec p : skeleton.params()) {
      Tensor t = skeleton.hfTensor(p.name());
      LinearSpec l = quantizable.get(p.name());
      if (l == null) {
        tensors.put(p.name(), t);
        other += t.data().length;
        continue;
      }
      float[] hf = t.toFloatArray();
      float[] outIn = p.transposed() ? hf : LanguageModel.transpose(hf, l.in(), l.out()); // GPT-2's Conv1D [in, out] → [out, in], as transformers quantizes it
      String dtype = t.dtype().torchName();
      computeDtype = dtype;
      Nf4Tensor q = Nf4Tensor.quantize(outIn, new long[] {l.out(), l.in()}, doubleQuant, dtype);
      tensors.putAll(q.toTensors(p.name()));
      count++;
      params += p.numel();
      qBytes += q.bytes();
    }
    Files.createDirectories(out);
    SafetensorsWriter.write(out.resolve(HfDirectory.SAFETENSORS), tensors, Map.of("format", "pt"));
    ObjectNode config = skeleton.config().raw().deepCopy();
    config.set("quantization_config", QuantizedCheckpoint.bnb4Config(doubleQuant, computeDtype));
    Path tmp = Files.createTempFile(out, ".config", ".tmp");
    Files.writeString(tmp, new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(config) + "\n");
    Files.move(tmp, out.resolve("config.json"), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    for (String f : ModelDirectory.TOKENIZER_FILES) {
      Path from = src.resolve(f);
      if (Files.isRegularFile(from)) {
        Files.copy(from, out.resolve(f), StandardCopyOption.REPLACE_EXISTING);
      }
    }
    return new Written(count, params, qBytes, other);
  }
}
