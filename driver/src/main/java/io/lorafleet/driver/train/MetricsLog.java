package io.lorafleet.driver.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.BufferedWriter;
import java.io.Closeable;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;

/**
 * metrics.jsonl: one JSON line per step, in step order, across relaunches and resumes. Before a
 * (re)start from step s, lines past s are dropped (and a line torn by a crash), so a replayed step
 * replaces its earlier line instead of being appended twice.
 */
final class MetricsLog implements Closeable {
  private static final ObjectMapper JSON = new ObjectMapper();
  private final Path file;
  private BufferedWriter out;

  private MetricsLog(Path file) {
    this.file = file;
  }

  /** Opens {@code file} for appending after keeping its lines for steps 1..{@code through}. */
  static MetricsLog open(Path file, int through) throws IOException {
    MetricsLog m = new MetricsLog(file);
    m.restartAfter(through);
    return m;
  }

  /** Drops the lines of steps after {@code step}; later lines continue from there. */
  void restartAfter(int step) throws IOException {
    if (out != null) {
      out.close();
    }
    List<String> keep = new ArrayList<>();
    if (Files.exists(file)) {
      for (String line : Files.readAllLines(file)) {
        try {
          JsonNode n = JSON.readTree(line);
          if (n != null && n.path("step").asInt(Integer.MAX_VALUE) <= step) {
            keep.add(line);
          }
        } catch (IOException torn) {
          // a line cut short by a crash: dropped
        }
      }
    }
    Path tmp = file.resolveSibling(".tmp-" + file.getFileName());
    Files.write(tmp, keep);
    Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    out = Files.newBufferedWriter(file, StandardOpenOption.APPEND);
  }

  /**
   * The steps so far (through {@code step}) as transformers' Trainer keeps them in
   * trainer_state.json's log_history: {step, loss, learning_rate, grad_norm}, and {step, eval_loss}
   * where a validation loss was measured.
   */
  com.fasterxml.jackson.databind.node.ArrayNode logHistory(int step) throws IOException {
    var history = JSON.createArrayNode();
    for (String line : Files.readAllLines(file)) {
      JsonNode n;
      try {
        n = JSON.readTree(line);
      } catch (IOException torn) {
        continue;
      }
      if (n == null || n.path("step").asInt(Integer.MAX_VALUE) > step) {
        continue;
      }
      var e = history.addObject();
      e.put("step", n.get("step").asInt());
      e.set("loss", n.get("loss"));
      e.set("learning_rate", n.get("lr"));
      e.set("grad_norm", n.get("grad_norm"));
      if (n.has("val_loss")) {
        history.addObject().put("step", n.get("step").asInt()).set("eval_loss", n.get("val_loss"));
      }
    }
    return history;
  }

  /** The file's lines for steps 1..{@code step}, as bytes: what a remote output holds with checkpoint-{@code step}. */
  byte[] through(int step) throws IOException {
    StringBuilder sb = new StringBuilder();
    for (String line : Files.readAllLines(file)) {
      try {
        JsonNode n = JSON.readTree(line);
        if (n != null && n.path("step").asInt(Integer.MAX_VALUE) <= step) {
          sb.append(line).append('\n');
        }
      } catch (IOException torn) {
        // not written whole yet
      }
    }
    return sb.toString().getBytes(java.nio.charset.StandardCharsets.UTF_8);
  }

  void write(JsonNode line) throws IOException {
    out.write(JSON.writeValueAsString(line));
    out.newLine();
    out.flush();
  }

  @Override
  public void close() throws IOException {
    out.close();
  }
}
