package io.lorafleet.worker;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.worker.flat.FlatLayout;
import io.lorafleet.worker.flat.Trainable;
import io.lorafleet.worker.generate.Generator;
import io.lorafleet.worker.generate.Sampling;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.model.Dropout;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.ForwardContext;
import io.lorafleet.worker.model.LinearDelta;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.TinyModelSpec;
import io.lorafleet.worker.safetensors.DType;
import io.lorafleet.worker.safetensors.SafetensorsReader;
import io.lorafleet.worker.safetensors.SafetensorsWriter;
import io.lorafleet.worker.safetensors.Tensor;
import io.lorafleet.worker.tokenizer.Tokenizer;
import io.lorafleet.worker.train.StepResult;
import io.lorafleet.worker.train.TokenLoss;
import io.lorafleet.worker.train.TrainStep;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeSet;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * lorafleet against the reference implementation on the same weights (minGPT's
 * test_huggingface_import, for LoRA). Each case under {@code src/test/resources/hf-reference} was
 * written by {@code src/test/python/hf_reference.py}: a model saved by transformers 5.17's
 * save_pretrained (config.json with {@code rope_parameters}, safetensors from the safetensors
 * library), an adapter saved by PEFT 0.21's save_pretrained, and float64 reference values from
 * transformers + PEFT: base and adapted logits and losses, the gradient of the token-mean loss for
 * every PEFT parameter, the merged model's logits and a greedy generation.
 *
 * <p>lorafleet computes in float32, so values agree to float32 rounding: logits within 2e-4 + 1e-4
 * relative; gradients within 1e-4 of each tensor's largest entry.
 *
 * <p>The other direction (PEFT reads what lorafleet writes) needs Python: this test also writes an
 * adapter, a merged export and its logits per case, and with {@code -Dlorafleet.hfcheck.out=DIR}
 * copies them to DIR for {@code hf_reference.py check DIR}.
 */
public class HfReferenceTest {
  public static final Path ROOT = Paths.get("src/test/resources/hf-reference");

  @TempDir Path tmp;

  public static int[][] ints(Tensor t) {
    ByteBuffer b = ByteBuffer.wrap(t.data()).order(ByteOrder.LITTLE_ENDIAN);
    long[] s = t.shape();
    int rows = s.length == 1 ? 1 : (int) s[0];
    int cols = (int) s[s.length - 1];
    int[][] out = new int[rows][cols];
    for (int i = 0; i < rows * cols; i++) {
      assertEquals(DType.I64, t.dtype());
      out[i / cols][i % cols] = (int) b.getLong(i * 8);
    }
    return out;
  }

  public static double scalar(Tensor t) {
    return t.toFloatArray()[0];
  }

  static void assertClose(float[] want, float[] got, double atol, double rtol, String what) {
    assertEquals(want.length, got.length, what + ": length");
    double worst = 0;
    int at = -1;
    for (int i = 0; i < want.length; i++) {
      double excess = Math.abs(want[i] - got[i]) - (atol + rtol * Math.abs(want[i]));
      if (excess > worst) {
        worst = excess;
        at = i;
      }
    }
    int i = at;
    assertTrue(at < 0, () -> what + ": element " + i + " is " + got[i] + " but the reference has " + want[i]
        + " (tolerance " + atol + " + " + rtol + "·|ref|)");
  }

  public static float[] logits(LanguageModel m, Trainable adapter, float[] values, Batch batch) {
    try (NDManager s = m.manager().newSubManager()) {
      ForwardContext ctx = adapter == null ? ForwardContext.inference(s, LinearDelta.NONE) : adapter.bind(s, values, false, Dropout.OFF).context();
      return m.forward(ctx, batch).toType(DataType.FLOAT32, false).toFloatArray();
    }
  }

  static double meanLoss(LanguageModel m, Trainable adapter, float[] values, Batch batch) {
    try (NDManager s = m.manager().newSubManager()) {
      ForwardContext ctx = adapter == null ? ForwardContext.inference(s, LinearDelta.NONE) : adapter.bind(s, values, false, Dropout.OFF).context();
      return TokenLoss.value(TokenLoss.sum(s, m.forward(ctx, batch), batch)) / batch.targetTokens();
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"llama", "llama-bf16", "qwen2", "mistral", "gpt2", "gpt2-f16"})
  void matchesTransformersAndPeft(String name) throws Exception {
    Path dir = ROOT.resolve(name);
    SafetensorsReader ref = SafetensorsReader.open(dir.resolve("reference.safetensors"));
    Batch batch = Batch.of(ints(ref.read("input_ids")), ints(ref.read("labels")));
    try (LanguageModel base = LanguageModel.load(dir, Device.cpu(), DataType.FLOAT32)) {
      // 1. the frozen base, loaded from what transformers wrote
      assertClose(ref.read("base.logits").toFloatArray(), logits(base, null, null, batch), 2e-4, 1e-4, name + " base logits");
      assertEquals(scalar(ref.read("base.loss")), meanLoss(base, null, null, batch), 2e-5, name + " base loss");

      // 2. the adapter PEFT wrote: same trainable tensors, same output, same loss
      AdapterFormat.Loaded adapter = AdapterFormat.read(dir.resolve("adapter"), base);
      LoraModel lora = adapter.model();
      float[] values = adapter.values();
      TreeSet<String> peftTrainable = ref.tensors().keySet().stream().filter(k -> k.startsWith("grad."))
          .map(k -> k.substring("grad.".length())).collect(Collectors.toCollection(TreeSet::new));
      TreeSet<String> ours = lora.layout().slots().stream().map(FlatLayout.Slot::key).collect(Collectors.toCollection(TreeSet::new));
      assertEquals(peftTrainable, ours, name + ": trainable tensors");
      float[] adapted = logits(base, lora, values, batch);
      assertClose(ref.read("lora.logits").toFloatArray(), adapted, 2e-4, 1e-4, name + " adapted logits");
      assertEquals(scalar(ref.read("lora.loss")), meanLoss(base, lora, values, batch), 2e-5, name + " adapted loss");

      // 3. gradients of the token-mean loss, tensor by tensor
      StepResult step = TrainStep.run(lora, values, List.of(batch), Dropout.Plan.NONE);
      for (FlatLayout.Slot s : lora.layout().slots()) {
        float[] want = ref.read("grad." + s.key()).toFloatArray();
        float[] got = new float[s.size()];
        for (int i = 0; i < got.length; i++) {
          got[i] = (float) (step.gradSum()[s.offset() + i] / step.tokens());
        }
        double max = 0;
        for (float w : want) {
          max = Math.max(max, Math.abs(w));
        }
        assertTrue(max > 1e-4, name + ": reference gradient of " + s.key() + " is ~0, the check would mean nothing");
        assertClose(want, got, 1e-4 * max, 0, name + " gradient " + s.key());
      }

      // 4. greedy generation with the KV cache
      int[] prompt = ints(ref.read("generate.prompt"))[0];
      int[] want = ints(ref.read("generate.lora"))[0];
      assertArrayEquals(want, Generator.generate(base, Optional.of(lora), values, prompt, Sampling.greedy(want.length), Optional.empty()),
          name + " greedy generation");
      int[][] batched = Generator.greedyBatch(base, Optional.of(lora), values, new int[][] {prompt, {prompt[0]}}, new int[] {want.length, 3},
          new int[] {-1, -1});
      assertArrayEquals(want, batched[0], name + " greedy generation beside a shorter, left-padded prompt");

      // 5. the adapter written back reads back identically; merged forward equals PEFT's merge_and_unload
      Path out = tmp.resolve(name);
      AdapterFormat.write(out.resolve("adapter"), lora, values, Map.of());
      assertArrayEquals(values, AdapterFormat.read(out.resolve("adapter"), base).values(), name + " adapter round trip");
      lora.merge(values);
      float[] merged = logits(base, null, null, batch);
      assertClose(ref.read("merged.logits").toFloatArray(), merged, 2e-4, 1e-4, name + " merged logits");
      ModelDirectory.export(out.resolve("merged"), base, dir);
      lora.unmerge(values);
      assertClose(ref.read("base.logits").toFloatArray(), logits(base, null, null, batch), 2e-4, 1e-4, name + " unmerged logits");
      exportForPython(name, dir, out, batch, adapted, Optional.empty(), "");
    }
  }

  /**
   * What {@code lorafleet init-model} writes, with an adapter on it: it must load here (and, checked
   * by hf_reference.py, in transformers, PEFT and transformers' tokenizer).
   */
  @Test
  void initModelDirectoryAndAdapterForPython() throws Exception {
    Path dir = tmp.resolve("init-model");
    ModelDirectory.initModel(dir, new TinyModelSpec("llama", 2, 32, 4, 2, 48, 1, 64, false),
        List.of("select", "name", "from", "users", "where", "age", ">", "30", ";"), 11);
    String text = "select name from users where age > 30 ;";
    try (LanguageModel base = LanguageModel.load(dir, Device.cpu(), DataType.FLOAT32); Tokenizer tok = Tokenizer.load(dir)) {
      int[] ids = tok.encodePrompt(text);
      assertEquals(text, tok.decode(ids));
      LoraModel lora = LoraModel.create(base, LoraConfig.of(4, 8, List.of("all-linear")));
      float[] values = lora.initialParams(3);
      java.util.Random r = new java.util.Random(4);
      for (int i = 0; i < values.length; i++) {
        values[i] += (float) (r.nextGaussian() * 0.2);
      }
      Path out = tmp.resolve("init-out");
      AdapterFormat.write(out.resolve("adapter"), lora, values, Map.of());
      assertArrayEquals(values, AdapterFormat.read(out.resolve("adapter"), base).values());
      Batch batch = Batch.of(new int[][] {ids}, new int[][] {ids});
      float[] adapted = logits(base, lora, values, batch);
      lora.merge(values);
      assertClose(adapted, logits(base, null, null, batch), 2e-4, 1e-4, "merged init-model");
      ModelDirectory.export(out.resolve("merged"), base, dir);
      exportForPython("init-model", dir, out, batch, adapted, Optional.of(ids), text);
    }
  }

  /** Leaves what lorafleet wrote (adapter, merged export, its logits) where hf_reference.py check can read it. */
  private static void exportForPython(String name, Path dir, Path out, Batch batch, float[] adapted, Optional<int[]> tokens, String text)
      throws Exception {
    String target = System.getProperty("lorafleet.hfcheck.out", "");
    if (target.isEmpty()) {
      return;
    }
    Path dst = Paths.get(target).resolve(name);
    Files.createDirectories(dst.resolve("base"));
    for (String f : List.of("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")) {
      if (Files.isRegularFile(dir.resolve(f))) {
        Files.copy(dir.resolve(f), dst.resolve("base").resolve(f), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
      }
    }
    for (String sub : List.of("adapter", "merged")) {
      Files.createDirectories(dst.resolve(sub));
      try (var files = Files.list(out.resolve(sub))) {
        for (Path f : (Iterable<Path>) files::iterator) {
          Files.copy(f, dst.resolve(sub).resolve(f.getFileName()), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        }
      }
    }
    Map<String, Tensor> t = new LinkedHashMap<>();
    ByteBuffer ids = ByteBuffer.allocate(batch.size() * batch.seqLen() * 8).order(ByteOrder.LITTLE_ENDIAN);
    for (int[] row : batch.inputIds()) {
      for (int v : row) {
        ids.putLong(v);
      }
    }
    t.put("input_ids", new Tensor(DType.I64, new long[] {batch.size(), batch.seqLen()}, ids.array()));
    t.put("lora.logits", Tensor.ofFloats(adapted, batch.size(), batch.seqLen(), adapted.length / (batch.size() * batch.seqLen())));
    if (tokens.isPresent()) {
      ByteBuffer tb = ByteBuffer.allocate(tokens.get().length * 8).order(ByteOrder.LITTLE_ENDIAN);
      for (int v : tokens.get()) {
        tb.putLong(v);
      }
      t.put("tokenizer.ids", new Tensor(DType.I64, new long[] {tokens.get().length}, tb.array()));
      Files.writeString(dst.resolve("tokenizer.text"), text);
    }
    SafetensorsWriter.write(dst.resolve("lorafleet.safetensors"), t, Map.of("format", "pt"));
  }
}
