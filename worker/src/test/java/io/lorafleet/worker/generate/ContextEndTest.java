package io.lorafleet.worker.generate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.types.DataType;
import io.lorafleet.worker.TinyModels;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.TinyModelSpec;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * No path decodes past the model's context, whatever it was asked: offline generation and greedy
 * batches end a row where prompt plus completion fill the positions (OpenAI's rule), and the decode
 * batch itself refuses a step at a position the model does not have. GPT-2's learned position
 * table would fail there anyway; Llama's rotary positions would not, which is how a request once
 * decoded thousands of tokens past a 256-token context.
 */
class ContextEndTest {
  @ParameterizedTest
  @ValueSource(strings = {"llama", "gpt2"})
  void generationEndsWhereThePromptAndTheCompletionFillTheContext(String arch) {
    TinyModelSpec spec = arch.equals("gpt2") ? TinyModels.GPT2 : TinyModels.LLAMA;
    try (LanguageModel m = TinyModels.model(spec, 3, DataType.FLOAT32)) {
      int context = m.config().maxPositions();
      int[] prompt = {1, 5, 9, 2};
      int[] out = Generator.generate(m, Optional.empty(), new float[0], prompt, Sampling.greedy(Integer.MAX_VALUE), Optional.empty());
      assertEquals(context - prompt.length, out.length, "Integer.MAX_VALUE new tokens asked; the context leaves " + (context - prompt.length));
      int[][] batch = Generator.greedyBatch(m, Optional.empty(), new float[0], new int[][] {prompt, {3}}, new int[] {Integer.MAX_VALUE, 2},
          new int[] {-1, -1});
      assertEquals(context - prompt.length, batch[0].length);
      assertEquals(2, batch[1].length, "a row that asked for fewer ends where it asked");
      int[] full = new int[context];
      java.util.Arrays.fill(full, 1);
      assertThrows(IllegalArgumentException.class, () -> Generator.generate(m, Optional.empty(), new float[0], full, Sampling.greedy(1),
          Optional.empty()), "a prompt that fills the context leaves nothing to generate");
    }
  }

  @Test
  void theDecodeBatchRefusesAPositionPastTheContext() {
    try (LanguageModel m = TinyModels.model(TinyModels.LLAMA, 3, DataType.FLOAT32); DecodeBatch batch = new DecodeBatch(m)) {
      int context = m.config().maxPositions();
      int[] prompt = new int[context - 1];
      java.util.Arrays.fill(prompt, 2);
      int[] tooLong = new int[context + 1];
      IllegalArgumentException longer = assertThrows(IllegalArgumentException.class, () -> batch.join(List.of(new DecodeBatch.Join(9, tooLong, 0,
          Optional.empty()))));
      assertTrue(longer.getMessage().contains(String.valueOf(context + 1)), longer.getMessage());
      batch.join(List.of(new DecodeBatch.Join(1, prompt, 0, Optional.empty())));
      assertFalse(batch.step(Map.of(1L, 3)).isEmpty(), "the last position, context − 1, is the model's");
      IllegalStateException past = assertThrows(IllegalStateException.class, () -> batch.step(Map.of(1L, 3)));
      assertTrue(past.getMessage().contains("position " + context), past.getMessage());
    }
  }
}
