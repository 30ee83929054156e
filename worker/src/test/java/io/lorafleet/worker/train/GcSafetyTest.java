package io.lorafleet.worker.train;

import io.lorafleet.worker.model.Dropout;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import ai.djl.ndarray.types.DataType;
import io.lorafleet.worker.TinyModels;
import io.lorafleet.worker.flat.Trainable;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.TinyModelSpec;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Gradients must not depend on when the garbage collector runs. Every native tensor that autograd
 * saves for the backward pass must stay owned until the step ends: DJL's Number overloads
 * (mul(Number), pow(Number)) close their scalar right after the forward op, and under GC pressure
 * the backward pass then read freed memory (NaN or different gradients). This runs the same steps
 * with a thread forcing collections all the while and requires bit-identical gradients.
 */
class GcSafetyTest {
  /** n steps on random batches drawn from {@code dataSeed}; the gradient of each. */
  static List<float[]> steps(LanguageModel m, Trainable t, float[] params, int n, long dataSeed) {
    Random r = new Random(dataSeed);
    List<float[]> grads = new ArrayList<>();
    for (int s = 0; s < n; s++) {
      int[][] ids = new int[2][10];
      for (int[] row : ids) {
        for (int i = 0; i < row.length; i++) {
          row[i] = 1 + r.nextInt(m.config().vocabSize() - 1);
        }
      }
      StepResult res = TrainStep.run(t, params, List.of(Batch.of(ids, ids)), Dropout.Plan.NONE);
      grads.add(res.gradSum());
    }
    return grads;
  }

  @ParameterizedTest
  @ValueSource(strings = {"llama-lora", "gpt2-lora", "llama-full"})
  void gradientsDoNotDependOnGarbageCollection(String mode) throws Exception {
    TinyModelSpec spec = mode.startsWith("gpt2") ? TinyModels.GPT2 : TinyModels.LLAMA;
    try (LanguageModel m = TinyModels.model(spec, 4, DataType.FLOAT32)) {
      Trainable t;
      float[] params;
      if (mode.endsWith("lora")) {
        LoraModel lora = LoraModel.create(m, LoraConfig.of(4, 8, List.of("all-linear")));
        params = lora.initialParams(1);
        Random r = new Random(2); // B starts at zero: give every factor values so that s·dB and dA matter
        for (int i = 0; i < params.length; i++) {
          params[i] += (float) (r.nextGaussian() * 0.1);
        }
        t = lora;
      } else {
        FullModel full = new FullModel(m);
        params = full.currentParams();
        t = full;
      }
      int n = 20;
      List<float[]> quiet = steps(m, t, params, n, 9);
      AtomicBoolean stop = new AtomicBoolean();
      Thread gc = new Thread(() -> {
        while (!stop.get()) {
          System.gc();
          try {
            Thread.sleep(1);
          } catch (InterruptedException e) {
            return;
          }
        }
      });
      gc.setDaemon(true);
      gc.start();
      List<float[]> stressed;
      try {
        stressed = steps(m, t, params, n, 9);
      } finally {
        stop.set(true);
        gc.join();
      }
      assertEquals(n, stressed.size());
      for (int s = 0; s < n; s++) {
        assertArrayEquals(quiet.get(s), stressed.get(s), mode + ": step " + s + " gradient under GC pressure");
      }
    }
  }
}
