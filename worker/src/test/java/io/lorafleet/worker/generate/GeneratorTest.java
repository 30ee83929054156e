package io.lorafleet.worker.generate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.worker.TinyModels;
import io.lorafleet.worker.flat.Trainable;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.model.Dropout;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.ForwardContext;
import io.lorafleet.worker.model.LinearDelta;
import io.lorafleet.worker.model.TinyModelSpec;
import java.util.List;
import java.util.Optional;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class GeneratorTest {
  /** Greedy decoding without a cache: re-run the whole sequence for every token. */
  static int[] slowGreedy(LanguageModel m, ForwardContextFactory f, int[] prompt, int n) {
    int[] seq = prompt.clone();
    int[] out = new int[n];
    for (int i = 0; i < n; i++) {
      try (NDManager s = m.manager().newSubManager()) {
        float[] logits = m.forward(f.make(s), Batch.of(new int[][] {seq}, new int[][] {new int[seq.length]})).toFloatArray();
        int v = m.config().vocabSize();
        float[] last = java.util.Arrays.copyOfRange(logits, (seq.length - 1) * v, seq.length * v);
        out[i] = Generator.argmax(last);
      }
      seq = java.util.Arrays.copyOf(seq, seq.length + 1);
      seq[seq.length - 1] = out[i];
    }
    return out;
  }

  interface ForwardContextFactory {
    ForwardContext make(NDManager m);
  }

  @ParameterizedTest
  @ValueSource(strings = {"llama", "gpt2"})
  void cachedGreedyEqualsRecomputation(String arch) {
    TinyModelSpec spec = arch.equals("llama") ? TinyModels.LLAMA : TinyModels.GPT2;
    try (LanguageModel m = TinyModels.model(spec, 4, DataType.FLOAT32)) {
      int[] prompt = {1, 5, 9, 3};
      int[] fast = Generator.generate(m, Optional.empty(), new float[0], prompt, Sampling.greedy(10), Optional.empty());
      assertArrayEquals(slowGreedy(m, s -> ForwardContext.inference(s, LinearDelta.NONE), prompt, 10), fast);
      LoraModel lora = LoraModel.create(m, LoraConfig.of(2, 4, List.of("all-linear")));
      float[] p = lora.initialParams(3);
      Random r = new Random(1);
      for (int i = 0; i < p.length; i++) {
        p[i] += (float) r.nextGaussian() * 0.3f;
      }
      int[] adapted = Generator.generate(m, Optional.<Trainable>of(lora), p, prompt, Sampling.greedy(10), Optional.empty());
      assertArrayEquals(slowGreedy(m, s -> lora.bind(s, p, false, Dropout.OFF).context(), prompt, 10), adapted);
      int[] sampled = Generator.generate(m, Optional.empty(), new float[0], prompt, new Sampling(10, 0.8, 0.9, 5), Optional.empty());
      assertArrayEquals(sampled, Generator.generate(m, Optional.empty(), new float[0], prompt, new Sampling(10, 0.8, 0.9, 5), Optional.empty()));
      assertEquals(10, sampled.length);
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"llama", "gpt2"})
  void batchedGreedyEqualsEachPromptAlone(String arch) {
    TinyModelSpec spec = arch.equals("llama") ? TinyModels.LLAMA : TinyModels.GPT2;
    try (LanguageModel m = TinyModels.model(spec, 4, DataType.FLOAT32)) {
      LoraModel lora = LoraModel.create(m, LoraConfig.of(2, 4, List.of("all-linear")));
      float[] p = lora.initialParams(3);
      Random r = new Random(1);
      for (int i = 0; i < p.length; i++) {
        p[i] += (float) r.nextGaussian() * 0.3f;
      }
      int[][] prompts = {{1, 5, 9, 3}, {1, 7}, {1, 2, 3, 4, 5, 6, 7}, {1}};
      int[] maxNew = {6, 9, 3, 8};
      for (Optional<Trainable> adapter : List.of(Optional.<Trainable>empty(), Optional.<Trainable>of(lora))) {
        float[] values = adapter.isPresent() ? p : new float[0];
        int[] alone0 = Generator.generate(m, adapter, values, prompts[0], Sampling.greedy(maxNew[0]), Optional.empty());
        // the first row's third token as "EOS": that row stops there, the others run on
        int eos = alone0[2];
        int[] stop = new int[prompts.length];
        java.util.Arrays.fill(stop, eos);
        int[][] batched = Generator.greedyBatch(m, adapter, values, prompts, maxNew, stop);
        for (int b = 0; b < prompts.length; b++) {
          int[] alone = Generator.generate(m, adapter, values, prompts[b], Sampling.greedy(maxNew[b]), Optional.of(eos));
          assertArrayEquals(alone, batched[b], arch + (adapter.isPresent() ? " + LoRA" : "") + ", prompt " + b);
        }
        assertTrue(batched[0].length <= 3 && batched[0][batched[0].length - 1] == eos, "row 0 stops at its EOS");
      }
    }
  }
}
