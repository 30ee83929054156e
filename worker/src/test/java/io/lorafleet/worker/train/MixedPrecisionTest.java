package io.lorafleet.worker.train;

import io.lorafleet.worker.model.Dropout;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.worker.HfReferenceTest;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.Djl;
import io.lorafleet.worker.safetensors.SafetensorsReader;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * fp16 compute, the dtype lorafleet picks on a GPU, run on the CPU (libtorch has fp16 CPU kernels):
 * logits and loss against transformers + PEFT's float64 values, and a LoRA step's gradient (fp32
 * master factors cast in the graph, fp16 activations, norms/softmax/loss in fp32) against the same
 * step in fp32. fp16 keeps 11 significant bits, a relative rounding of 4.9e-4 per operation.
 */
class MixedPrecisionTest {
  static double relErr(float[] want, float[] got) {
    double num = 0;
    double den = 0;
    for (int i = 0; i < want.length; i++) {
      num += (want[i] - got[i]) * (double) (want[i] - got[i]);
      den += want[i] * (double) want[i];
    }
    return Math.sqrt(num / den);
  }

  @Test
  void computeDtypeIsPerDeviceAndCanBeOverridden() {
    assertEquals(DataType.FLOAT16, Djl.computeDtype(Device.gpu()));
    assertEquals(DataType.FLOAT32, Djl.computeDtype(Device.cpu()));
    try {
      System.setProperty(Djl.DTYPE_PROPERTY, "fp32");
      assertEquals(DataType.FLOAT32, Djl.computeDtype(Device.gpu()));
      System.setProperty(Djl.DTYPE_PROPERTY, "bf16");
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Djl.computeDtype(Device.cpu()));
      assertTrue(e.getMessage().contains("-Dlorafleet.dtype is 'bf16', expected auto, fp32 or fp16"), e.getMessage());
    } finally {
      System.clearProperty(Djl.DTYPE_PROPERTY);
    }
  }

  /** The encoders under fp16 compute (the GPU default), DeBERTa with its convolution layer, against fp32: logits, loss and gradients of LoRA and the head. */
  @ParameterizedTest
  @ValueSource(strings = {"roberta", "deberta"})
  void encodersUnderFp16TrackFp32(String arch) {
    var spec = arch.equals("roberta") ? io.lorafleet.worker.TinyModels.ROBERTA : io.lorafleet.worker.TinyModels.DEBERTA;
    var json = spec.configJson(1, 2);
    if (arch.equals("deberta")) {
      json.put("conv_kernel_size", 3).put("conv_act", "gelu");
    }
    var config = io.lorafleet.worker.model.ModelConfig.fromJson(json, arch);
    var tensors = io.lorafleet.worker.model.ModelDirectory.randomTensors(config, 3);
    Batch batch = Batch.classification(new int[][] {{1, 5, 9, 13, 17, 21, 2}, {1, 30, 31, 2}}, new float[] {1, 0});
    try (LanguageModel half = LanguageModel.fromTensors(config, tensors, Device.cpu(), DataType.FLOAT16);
        LanguageModel full = LanguageModel.fromTensors(config, tensors, Device.cpu(), DataType.FLOAT32)) {
      var cfg = io.lorafleet.worker.lora.LoraConfig.of(4, 8, List.of("all-linear"));
      var l16 = io.lorafleet.worker.lora.LoraModel.create(half, cfg);
      var l32 = io.lorafleet.worker.lora.LoraModel.create(full, cfg);
      float[] p = io.lorafleet.worker.TinyModels.trained(l32, 5);
      double logitErr = relErr(HfReferenceTest.logits(full, l32, p, batch), HfReferenceTest.logits(half, l16, p, batch));
      StepResult g16 = TrainStep.run(l16, p, List.of(batch), Dropout.Plan.NONE);
      StepResult g32 = TrainStep.run(l32, p, List.of(batch), Dropout.Plan.NONE);
      double gradErr = relErr(g32.gradSum(), g16.gradSum());
      System.out.printf("%s fp16: logits rel. error %.2e, gradient rel. error %.2e, loss %.5f vs %.5f%n", arch, logitErr, gradErr, g16.meanLoss(), g32.meanLoss());
      assertTrue(logitErr < 1e-2, arch + ": fp16 logits relative error " + logitErr);
      assertTrue(gradErr < 3e-2, arch + ": fp16 gradient relative error " + gradErr);
      assertEquals(g32.meanLoss(), g16.meanLoss(), 1e-2);
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"llama", "qwen2", "mistral", "gpt2-f16"})
  void fp16ComputeTracksTheReference(String name) throws Exception {
    Path dir = HfReferenceTest.ROOT.resolve(name);
    SafetensorsReader ref = SafetensorsReader.open(dir.resolve("reference.safetensors"));
    Batch batch = Batch.of(HfReferenceTest.ints(ref.read("input_ids")), HfReferenceTest.ints(ref.read("labels")));
    try (LanguageModel half = LanguageModel.load(dir, Device.cpu(), DataType.FLOAT16); LanguageModel full = LanguageModel.load(dir, Device.cpu(), DataType.FLOAT32)) {
      AdapterFormat.Loaded a16 = AdapterFormat.read(dir.resolve("adapter"), half);
      AdapterFormat.Loaded a32 = AdapterFormat.read(dir.resolve("adapter"), full);
      double logitErr = relErr(ref.read("lora.logits").toFloatArray(), HfReferenceTest.logits(half, a16.model(), a16.values(), batch));
      StepResult g16 = TrainStep.run(a16.model(), a16.values(), List.of(batch), Dropout.Plan.NONE);
      StepResult g32 = TrainStep.run(a32.model(), a32.values(), List.of(batch), Dropout.Plan.NONE);
      double gradErr = relErr(g32.gradSum(), g16.gradSum());
      double lossErr = Math.abs(g16.meanLoss() - HfReferenceTest.scalar(ref.read("lora.loss")));
      System.out.printf("%s fp16: logits rel. error %.2e, gradient rel. error %.2e, loss error %.2e%n", name, logitErr, gradErr, lossErr);
      assertTrue(logitErr < 1e-2, name + ": fp16 logits relative error " + logitErr);
      assertTrue(gradErr < 3e-2, name + ": fp16 gradient relative error " + gradErr);
      assertTrue(lossErr < 1e-2, name + ": fp16 loss error " + lossErr);
    }
  }
}
