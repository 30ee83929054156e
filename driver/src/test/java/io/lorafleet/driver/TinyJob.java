package io.lorafleet.driver;

import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.TinyModelSpec;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/** The smallest job the CLI tests run end to end: a one-layer model over 5 words, and "w =" → next-word records. */
public final class TinyJob {
  public static final List<String> WORDS = List.of("a", "b", "c", "d", "=");

  private TinyJob() {}

  /** Writes the model to {@code dir/model} and {@code n} records to {@code dir/d.jsonl}. */
  public static void write(Path dir, long seed, int n) throws IOException {
    ModelDirectory.initModel(dir.resolve("model"), new TinyModelSpec("llama", 1, 16, 2, 2, 32, 1, 32, false), WORDS, seed);
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < n; i++) {
      sb.append("{\"context\": \"").append(WORDS.get(i % 4)).append(" =\", \"target\": \"").append(WORDS.get((i + 1) % 4)).append("\"}\n");
    }
    Files.writeString(dir.resolve("d.jsonl"), sb);
  }
}
