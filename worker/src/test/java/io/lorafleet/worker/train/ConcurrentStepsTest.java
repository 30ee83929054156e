package io.lorafleet.worker.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;

import ai.djl.ndarray.types.DataType;
import io.lorafleet.worker.TinyModels;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.LanguageModel;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;

/**
 * Workers that share an executor JVM share one frozen base and run their steps at the same time:
 * each thread's gradients must equal what it computes alone.
 */
class ConcurrentStepsTest {
  @Test
  void threadsSharingABaseComputeWhatEachComputesAlone() throws Exception {
    try (LanguageModel m = TinyModels.model(TinyModels.LLAMA, 5, DataType.FLOAT32)) {
      LoraModel lora = LoraModel.create(m, LoraConfig.of(4, 8, List.of("all-linear")));
      int workers = 3;
      List<float[]> params = new ArrayList<>();
      for (int w = 0; w < workers; w++) {
        float[] p = lora.initialParams(w);
        Random r = new Random(w);
        for (int i = 0; i < p.length; i++) {
          p[i] += (float) (r.nextGaussian() * 0.1);
        }
        params.add(p);
      }
      List<List<float[]>> alone = new ArrayList<>();
      for (int w = 0; w < workers; w++) {
        alone.add(GcSafetyTest.steps(m, lora, params.get(w), 15, w));
      }
      ExecutorService pool = Executors.newFixedThreadPool(workers);
      try {
        List<Future<List<float[]>>> together = new ArrayList<>();
        for (int w = 0; w < workers; w++) {
          int id = w;
          together.add(pool.submit(() -> GcSafetyTest.steps(m, lora, params.get(id), 15, id)));
        }
        for (int w = 0; w < workers; w++) {
          List<float[]> got = together.get(w).get();
          for (int s = 0; s < got.size(); s++) {
            assertArrayEquals(alone.get(w).get(s), got.get(s), "worker " + w + ", step " + s);
          }
        }
      } finally {
        pool.shutdownNow();
      }
    }
  }
}
