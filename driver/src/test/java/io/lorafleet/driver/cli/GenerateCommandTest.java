package io.lorafleet.driver.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.lorafleet.driver.TinyJob;
import io.lorafleet.worker.flat.Trainable;
import io.lorafleet.worker.generate.Generator;
import io.lorafleet.worker.generate.Sampling;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.ModelSkeleton;
import io.lorafleet.worker.tokenizer.Tokenizer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** generate --input: three adapters and the base mixed in one file, line for line equal to per-adapter runs. */
class GenerateCommandTest {
  @TempDir Path tmp;

  @Test
  void aFileOfMixedAdaptersMatchesPerAdapterRunsLineForLine() throws Exception {
    TinyJob.write(tmp, 8, 0);
    Path model = tmp.resolve("model");
    List<LoraConfig> cfgs = List.of(LoraConfig.of(2, 4, List.of("q_proj", "v_proj")), LoraConfig.of(6, 3, List.of("all-linear")).withRslora(true),
        LoraConfig.of(4, 8, List.of("down_proj")));
    String[] names = {"sql", "chat", "math"};
    for (int i = 0; i < 3; i++) {
      LoraModel lora = LoraModel.create(ModelSkeleton.read(model), cfgs.get(i));
      float[] v = lora.initialParams(i);
      Random r = new Random(i);
      for (int k = 0; k < v.length; k++) {
        v[k] += (float) (r.nextGaussian() * 0.5);
      }
      AdapterFormat.write(tmp.resolve(names[i]), lora, v, Map.of());
    }
    String[] adapterOfRow = {"math", "__base__", "sql", "chat", "sql", "math", "chat", "__base__"};
    String[] prompt = {"a =", "b c =", "d", "a a b =", "c =", "b =", "d d =", "a"};
    StringBuilder in = new StringBuilder();
    for (int i = 0; i < prompt.length; i++) {
      in.append("{\"prompt\": \"").append(prompt[i]).append("\", \"adapter\": \"").append(adapterOfRow[i]).append("\", \"max_new_tokens\": ")
          .append(3 + i % 3).append(i == 6 ? ", \"temperature\": 0.9, \"seed\": 5" : "").append(", \"id\": ").append(i).append("}\n");
    }
    Files.writeString(tmp.resolve("in.jsonl"), in);
    Path out = tmp.resolve("out.jsonl");
    assertEquals(0, Main.execute("generate", "--model", model.toString(), "--adapter", "sql=" + tmp.resolve("sql"), "--adapter",
        "chat=" + tmp.resolve("chat"), "--adapter", "math=" + tmp.resolve("math"), "--input", tmp.resolve("in.jsonl").toString(), "--out",
        out.toString(), "--batch-size", "5"));
    List<String> lines = Files.readAllLines(out);
    assertEquals(prompt.length, lines.size());
    try (LanguageModel base = LanguageModel.load(model, Device.cpu(), DataType.FLOAT32); Tokenizer tok = Tokenizer.load(model)) {
      int distinct = 0;
      java.util.Set<String> seen = new java.util.HashSet<>();
      for (int i = 0; i < prompt.length; i++) {
        JsonNode row = new ObjectMapper().readTree(lines.get(i));
        assertEquals(i, row.get("id").asInt(), "input order, and the input's own fields kept");
        Optional<AdapterFormat.Loaded> a = adapterOfRow[i].equals("__base__") ? Optional.empty()
            : Optional.of(AdapterFormat.read(tmp.resolve(adapterOfRow[i]), base));
        Sampling s = i == 6 ? new Sampling(3 + i % 3, 0.9, 1.0, 5) : new Sampling(3 + i % 3, 0, 1.0, 0);
        int[] gen = Generator.generate(base, a.map(x -> (Trainable) x.model()), a.map(AdapterFormat.Loaded::values).orElse(new float[0]),
            tok.encodePrompt(prompt[i]), s, tok.eos());
        assertEquals(tok.decode(gen), row.get("completion").asText(), "line " + i + " (" + adapterOfRow[i] + ")");
        assertEquals(gen.length, row.get("completion_tokens").asInt());
        distinct += seen.add(adapterOfRow[i] + ":" + row.get("completion").asText()) ? 1 : 0;
      }
      assertTrue(distinct > 3, "the adapters must make different completions for this test to mean anything");
    }
    Files.writeString(tmp.resolve("bad.jsonl"), "{\"prompt\": \"a\", \"adapter\": \"nope\"}\n");
    assertEquals(2, Main.execute("generate", "--model", model.toString(), "--adapter", "sql=" + tmp.resolve("sql"), "--input",
        tmp.resolve("bad.jsonl").toString(), "--out", tmp.resolve("bad-out.jsonl").toString()), "an unknown adapter is refused, naming the line");
    assertTrue(!Files.exists(tmp.resolve("bad-out.jsonl")));
  }
}
