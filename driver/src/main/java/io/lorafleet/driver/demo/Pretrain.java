package io.lorafleet.driver.demo;

import io.lorafleet.worker.model.Dropout;
import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.driver.optim.AdamW;
import io.lorafleet.driver.optim.Schedule;
import io.lorafleet.worker.flat.FlatLayout;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.safetensors.Tensor;
import io.lorafleet.worker.tokenizer.Tokenizer;
import io.lorafleet.worker.train.FullModel;
import io.lorafleet.worker.train.StepResult;
import io.lorafleet.worker.train.TrainStep;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/**
 * Gives the demo's random base a real, generic skill before LoRA: full fine-tuning (lorafleet's
 * FullModel, AdamW) on a built-in synthetic corpus of copy tasks, "copy : w1 … wn =&gt; w1 … wn", with
 * words drawn from the whole vocabulary. Copying is what the SQL task needs from a base (column
 * names and numbers come from the question), but the corpus holds no SQL.
 */
public final class Pretrain {
  private Pretrain() {}

  /** Trains the model in {@code dir} in place; returns the final mean loss over the last 20 steps. */
  public static double run(Path dir, int steps, int batch, double lr, long seed) throws IOException {
    double recent;
    try (LanguageModel m = LanguageModel.load(dir, Device.cpu(), DataType.FLOAT32); Tokenizer tok = Tokenizer.load(dir)) {
      List<String> words = SqlTask.vocabulary();
      int copy = tok.encode("copy")[0];
      int colon = tok.encode(":")[0];
      int arrow = tok.encode("=>")[0];
      FullModel full = new FullModel(m);
      float[] p = full.currentParams();
      AdamW opt = new AdamW(p.length, 0.9, 0.98, 1e-8, 0.0, false);
      Schedule sched = new Schedule("cosine", lr, steps / 20, steps);
      Random r = new Random(seed);
      List<Double> last = new ArrayList<>();
      for (int s = 0; s < steps; s++) {
        int[][] ids = new int[batch][];
        int[][] labels = new int[batch][];
        for (int b = 0; b < batch; b++) {
          int n = 2 + r.nextInt(9);
          int[] w = new int[n];
          for (int i = 0; i < n; i++) {
            w[i] = tok.encode(words.get(r.nextInt(words.size())))[0];
          }
          int len = 4 + 2 * n + 1;
          ids[b] = new int[len];
          labels[b] = new int[len];
          int k = 0;
          ids[b][k++] = tok.bos().orElseThrow();
          ids[b][k++] = copy;
          ids[b][k++] = colon;
          System.arraycopy(w, 0, ids[b], k, n);
          k += n;
          ids[b][k++] = arrow;
          System.arraycopy(w, 0, ids[b], k, n);
          k += n;
          ids[b][k] = tok.eos().orElseThrow();
          java.util.Arrays.fill(labels[b], Batch.IGNORE);
          for (int i = 4 + n; i < len; i++) {
            labels[b][i] = ids[b][i]; // loss on the copy and the EOS only
          }
        }
        StepResult res = TrainStep.run(full, p, List.of(Batch.of(ids, labels)), Dropout.Plan.NONE);
        float[] g = res.gradSum();
        for (int i = 0; i < g.length; i++) {
          g[i] /= res.tokens();
        }
        AdamW.clipByGlobalNorm(g, 1.0);
        opt.step(p, g, sched.lr(s));
        last.add(res.meanLoss());
        if (last.size() > 20) {
          last.remove(0);
        }
      }
      recent = last.stream().mapToDouble(Double::doubleValue).average().orElse(Double.NaN);
      Map<String, Tensor> tensors = new LinkedHashMap<>();
      for (FlatLayout.Slot slot : full.layout().slots()) {
        tensors.put(slot.key(), Tensor.ofFloats(full.layout().slice(p, slot), slot.shape()));
      }
      ModelDirectory.write(dir, m.config().raw(), tensors);
    }
    return recent;
  }
}
