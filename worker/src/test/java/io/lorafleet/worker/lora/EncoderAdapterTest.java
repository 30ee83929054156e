package io.lorafleet.worker.lora;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.lorafleet.worker.TinyModels;
import io.lorafleet.worker.flat.Trainable;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.model.Dropout;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.HfDirectory;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.ModelSkeleton;
import io.lorafleet.worker.model.TinyModelSpec;
import io.lorafleet.worker.safetensors.DType;
import io.lorafleet.worker.safetensors.SafetensorsReader;
import io.lorafleet.worker.safetensors.SafetensorsWriter;
import io.lorafleet.worker.safetensors.Tensor;
import io.lorafleet.worker.train.FrozenModel;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Encoder adapters: the classification head is trained whole and saved where PEFT saves
 * modules_to_save for task type SEQ_CLS; merged equals unmerged, the merged export carries the
 * trained head, and a base without a head gets transformers' initialization, the same on the driver
 * (skeleton) as on workers.
 */
class EncoderAdapterTest {
  @TempDir Path tmp;

  private static final Batch BATCH = Batch.classification(new int[][] {{1, 5, 9, 13, 17, 2}, {1, 30, 2}, {1, 4, 4, 4, 2}}, new float[] {1, 0, 1});

  static TinyModelSpec spec(String arch) {
    return arch.equals("roberta") ? TinyModels.ROBERTA : TinyModels.DEBERTA;
  }

  static float[] logits(Trainable t, float[] p) {
    try (NDManager s = t.base().manager().newSubManager()) {
      return t.base().forward(t.bind(s, p, false, Dropout.OFF).context(), BATCH).toType(DataType.FLOAT32, false).toFloatArray();
    }
  }

  /**
   * With -Dlorafleet.hfcheck.out=DIR, leaves the base, the adapter, the merged export and
   * lorafleet's logits (with the batch's ids and attention mask) in DIR/&lt;arch&gt;-cls for
   * hf_reference.py check, which loads them with AutoModelForSequenceClassification and PEFT.
   */
  private static void exportForPython(String arch, Path base, Path adapter, Path merged, float[] logits) throws Exception {
    String target = System.getProperty("lorafleet.hfcheck.out", "");
    if (target.isEmpty()) {
      return;
    }
    Path dst = Path.of(target).resolve(arch + "-cls");
    for (var e : Map.of("base", base, "adapter", adapter, "merged", merged).entrySet()) {
      Files.createDirectories(dst.resolve(e.getKey()));
      try (var files = Files.list(e.getValue())) {
        for (Path f : (Iterable<Path>) files::iterator) {
          Files.copy(f, dst.resolve(e.getKey()).resolve(f.getFileName()), StandardCopyOption.REPLACE_EXISTING);
        }
      }
    }
    int b = BATCH.size();
    int t = BATCH.seqLen();
    ByteBuffer ids = ByteBuffer.allocate(b * t * 8).order(ByteOrder.LITTLE_ENDIAN);
    ByteBuffer mask = ByteBuffer.allocate(b * t * 8).order(ByteOrder.LITTLE_ENDIAN);
    for (int r = 0; r < b; r++) {
      for (int i = 0; i < t; i++) {
        ids.putLong(BATCH.inputIds()[r][i]);
        mask.putLong(BATCH.segmentIds().orElseThrow()[r][i] == 0 ? 1 : 0);
      }
    }
    Map<String, Tensor> out = new LinkedHashMap<>();
    out.put("input_ids", new Tensor(DType.I64, new long[] {b, t}, ids.array()));
    out.put("attention_mask", new Tensor(DType.I64, new long[] {b, t}, mask.array()));
    out.put("lora.logits", Tensor.ofFloats(logits, b, logits.length / b));
    SafetensorsWriter.write(dst.resolve("lorafleet.safetensors"), out, Map.of("format", "pt"));
  }

  @ParameterizedTest
  @ValueSource(strings = {"roberta", "deberta"})
  void headIsSavedAsModulesToSaveAndMergedEqualsUnmerged(String arch) throws Exception {
    TinyModelSpec spec = spec(arch);
    Path base = tmp.resolve("base");
    Map<String, Tensor> t = new LinkedHashMap<>(TinyModels.tensors(spec, 3));
    t.keySet().removeIf(k -> k.startsWith("classifier") || k.startsWith("pooler")); // a base model: no head
    var baseJson = spec.configJson(1, 2); // saved for masked LM, as roberta-base and deberta-v3-base are
    baseJson.putArray("architectures").add(arch.equals("roberta") ? "RobertaForMaskedLM" : "DebertaV2ForMaskedLM");
    ModelDirectory.write(base, baseJson, t);
    try (LanguageModel m = LanguageModel.load(base, Device.cpu(), DataType.FLOAT32)) {
      ModelSkeleton sk = ModelSkeleton.read(base);
      List<String> heads = arch.equals("roberta")
          ? List.of("classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight", "classifier.out_proj.bias")
          : List.of("pooler.dense.weight", "pooler.dense.bias", "classifier.weight", "classifier.bias");
      assertEquals(heads, m.headTensors());
      for (String h : heads) { // transformers' _init_weights: N(0, initializer_range), zero biases; the driver's copy is the workers'
        float[] v = m.hfTensor(h).toFloatArray();
        assertArrayEquals(v, sk.hfTensor(h).toFloatArray(), h);
        double sq = 0;
        for (float x : v) {
          sq += x * x;
        }
        double std = Math.sqrt(sq / v.length);
        assertTrue(h.endsWith(".bias") ? std == 0 : v.length < 256 ? std > 0.01 && std < 0.04 : Math.abs(std - 0.02) < 0.004, h + " std " + std);
      }
      LoraModel lora = LoraModel.create(m, LoraConfig.of(4, 8, List.of("all-linear")));
      assertEquals(heads, lora.biases());
      float[] p = TinyModels.trained(lora, 5);
      float[] before = logits(new FrozenModel(m), new float[0]);
      float[] unmerged = logits(lora, p);
      Path out = tmp.resolve("adapter");
      AdapterFormat.write(out, lora, p, Map.of());
      JsonNode cfg = new ObjectMapper().readTree(out.resolve(AdapterFormat.CONFIG).toFile());
      assertEquals("SEQ_CLS", cfg.get("task_type").asText());
      assertEquals(arch.equals("roberta") ? "[\"classifier\"]" : "[\"pooler\",\"classifier\"]", cfg.get("modules_to_save").toString());
      Map<String, Tensor> saved = new LinkedHashMap<>();
      {
        SafetensorsReader r = SafetensorsReader.open(out.resolve(AdapterFormat.WEIGHTS));
        for (String h : heads) {
          assertTrue(r.info("base_model.model." + h).isPresent(), h + " under PEFT's modules_to_save key");
        }
        r.tensors().keySet().forEach(k -> saved.put(k.replace("classifier.", "classifier.modules_to_save.default."), r.read(k)));
        assertTrue(r.tensors().keySet().stream().noneMatch(k -> k.contains("classifier") && k.contains("lora_")), "no LoRA on the head");
      }
      AdapterFormat.Loaded back = AdapterFormat.read(out, sk);
      assertArrayEquals(p, back.values());
      // the in-memory form PEFT's ModulesToSaveWrapper names (…classifier.modules_to_save.default.…) reads as well
      SafetensorsWriter.write(out.resolve(AdapterFormat.WEIGHTS), saved, Map.of("format", "pt"));
      assertArrayEquals(p, AdapterFormat.read(out, sk).values());

      lora.merge(p);
      float[] merged = logits(new FrozenModel(m), new float[0]);
      for (int i = 0; i < merged.length; i++) {
        assertEquals(unmerged[i], merged[i], 1e-5, "logit " + i);
        assertTrue(Math.abs(unmerged[i] - before[i]) > 1e-4, "the adapter changes logit " + i);
      }
      Path export = tmp.resolve("merged");
      ModelDirectory.export(export, m, base);
      assertEquals(arch.equals("roberta") ? "[\"RobertaForSequenceClassification\"]" : "[\"DebertaV2ForSequenceClassification\"]",
          new ObjectMapper().readTree(export.resolve("config.json").toFile()).get("architectures").toString());
      {
        SafetensorsReader r = SafetensorsReader.open(export.resolve(HfDirectory.SAFETENSORS));
        for (String h : heads) {
          assertArrayEquals(lora.layout().slice(p, lora.layout().slot("base_model.model." + h).orElseThrow()), r.read(h).toFloatArray(),
              h + " exported trained");
        }
      }
      try (LanguageModel reloaded = LanguageModel.load(export, Device.cpu(), DataType.FLOAT32)) {
        assertArrayEquals(merged, logits(new FrozenModel(reloaded), new float[0]), 1e-6f);
      }
      exportForPython(arch, base, out, export, unmerged);
      lora.unmerge(p);
      float[] restored = logits(new FrozenModel(m), new float[0]);
      for (int i = 0; i < restored.length; i++) {
        assertEquals(before[i], restored[i], 1e-5, "unmerged logit " + i);
      }
    }
  }

  /**
   * BERT saved as sentence-transformers saves it (no pooler, no head): by default only the
   * classifier is trained whole and the pooler is an initialized frozen tensor; with
   * modules_to_save pooler,classifier the pooler is trained and saved too, read back, merged and
   * exported. What an adapter cannot train whole, or a list without the head, is refused by name.
   */
  @org.junit.jupiter.api.Test
  void bertsPoolerIsFrozenUnlessModulesToSaveNamesIt() throws Exception {
    Path base = tmp.resolve("bert-base");
    Map<String, Tensor> t = new LinkedHashMap<>(TinyModels.tensors(TinyModels.BERT, 3));
    t.keySet().removeIf(k -> k.startsWith("classifier") || k.startsWith("bert.pooler"));
    ModelDirectory.write(base, TinyModels.BERT.configJson(1, 2), t);
    List<String> pooler = List.of("bert.pooler.dense.weight", "bert.pooler.dense.bias");
    List<String> head = List.of("classifier.weight", "classifier.bias");
    try (LanguageModel m = LanguageModel.load(base, Device.cpu(), DataType.FLOAT32)) {
      ModelSkeleton sk = ModelSkeleton.read(base);
      assertEquals(head, sk.untrainedHead(), "eval says its base row is an untrained head's");
      assertEquals(List.of(), ModelSkeleton.read(tmp.resolve("bert-base")).untrainedHead().stream().filter(x -> x.contains("pooler")).toList(),
          "the frozen pooler is no head");
      assertEquals(head, LoraModel.create(m, LoraConfig.of(2, 4, List.of("query", "value"))).biases(), "PEFT's SEQ_CLS default: the classifier alone");
      for (String x : pooler) {
        assertArrayEquals(m.hfTensor(x).toFloatArray(), sk.hfTensor(x).toFloatArray(), x + ": the same initialized pooler on the driver and the workers");
      }
      LoraModel lora = LoraModel.create(m, LoraConfig.of(2, 4, List.of("query", "value")).withModulesToSave(List.of("pooler", "classifier")));
      List<String> whole = new java.util.ArrayList<>(pooler);
      whole.addAll(head);
      assertEquals(whole, lora.biases());
      float[] p = TinyModels.trained(lora, 5);
      float[] unmerged = logits(lora, p);
      Path out = tmp.resolve("bert-adapter");
      AdapterFormat.write(out, lora, p, Map.of());
      JsonNode cfg = new ObjectMapper().readTree(out.resolve(AdapterFormat.CONFIG).toFile());
      assertEquals("[\"pooler\",\"classifier\"]", cfg.get("modules_to_save").toString());
      SafetensorsReader saved = SafetensorsReader.open(out.resolve(AdapterFormat.WEIGHTS));
      for (String x : whole) {
        assertTrue(saved.info("base_model.model." + x).isPresent(), x + " saved as modules_to_save");
      }
      AdapterFormat.Loaded back = AdapterFormat.read(out, sk);
      assertEquals(whole, back.model().biases(), "read back with its modules_to_save");
      assertArrayEquals(p, back.values());
      lora.merge(p);
      assertArrayEquals(unmerged, logits(new FrozenModel(m), new float[0]), 1e-5f);
      Path export = tmp.resolve("bert-merged");
      ModelDirectory.export(export, m, base);
      try (LanguageModel reloaded = LanguageModel.load(export, Device.cpu(), DataType.FLOAT32)) {
        assertArrayEquals(unmerged, logits(new FrozenModel(reloaded), new float[0]), 1e-5f);
        assertArrayEquals(lora.layout().slice(p, lora.layout().slot("base_model.model." + pooler.get(0)).orElseThrow()), reloaded.hfTensor(pooler.get(0))
            .toFloatArray(), "the trained pooler is exported");
      }
      lora.unmerge(p);
      for (var c : Map.of(List.of("pooler"), "leaves out the classification head", List.of("query", "classifier"), "which lorafleet does not train whole",
          List.of("decoder", "classifier"), "names no module").entrySet()) {
        var e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
            () -> LoraModel.create(m, LoraConfig.of(2, 4, List.of("query")).withModulesToSave(c.getKey())));
        assertTrue(e.getMessage().contains(c.getValue()), e.getMessage());
      }
    }
  }

  /**
   * An empty target_modules trains what a sequence classifier saves whole and nothing else (a linear
   * probe of the frozen body): no LoRA factor, the head alone, written and read back as PEFT writes
   * target_modules [], and merged as it trains. A causal LM has nothing saved whole: refused by name.
   */
  @org.junit.jupiter.api.Test
  void anEmptyTargetModulesTrainsTheHeadAlone() throws Exception {
    Path base = tmp.resolve("bert-probe");
    ModelDirectory.write(base, TinyModels.BERT.configJson(1, 2), TinyModels.tensors(TinyModels.BERT, 3));
    try (LanguageModel m = LanguageModel.load(base, Device.cpu(), DataType.FLOAT32)) {
      LoraModel probe = LoraModel.create(m, LoraConfig.of(2, 4, List.of()));
      assertEquals(List.of(), probe.targets());
      assertEquals(List.of("classifier.weight", "classifier.bias"), probe.biases());
      float[] p = TinyModels.trained(probe, 5);
      float[] unmerged = logits(probe, p);
      Path out = tmp.resolve("probe-adapter");
      AdapterFormat.write(out, probe, p, Map.of());
      assertEquals("[]", new ObjectMapper().readTree(out.resolve(AdapterFormat.CONFIG).toFile()).get("target_modules").toString());
      AdapterFormat.Loaded back = AdapterFormat.read(out, m);
      assertArrayEquals(p, back.values());
      assertArrayEquals(unmerged, logits(back.model(), back.values()), 0f);
      probe.merge(p);
      assertArrayEquals(unmerged, logits(new FrozenModel(m), new float[0]), 1e-6f);
      probe.unmerge(p);
    }
    Path llama = tmp.resolve("llama-probe");
    ModelDirectory.write(llama, TinyModels.LLAMA.configJson(1, 2), TinyModels.tensors(TinyModels.LLAMA, 3));
    try (LanguageModel m = LanguageModel.load(llama, Device.cpu(), DataType.FLOAT32)) {
      var e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> LoraModel.create(m, LoraConfig.of(2, 4, List.of())));
      assertTrue(e.getMessage().contains("target_modules is empty") && e.getMessage().contains("q_proj"), e.getMessage());
    }
  }

  /**
   * DistilBERT as PEFT adapts it: LoRA on q_lin, k_lin, v_lin, out_lin, lin1, lin2; the classifier
   * trained whole and pre_classifier frozen (initialized when the checkpoint lacks it) unless
   * modules_to_save names it; merged and exported, the model gives the unmerged logits.
   */
  @org.junit.jupiter.api.Test
  void distilbertsPreClassifierIsFrozenUnlessModulesToSaveNamesItAndMergesExactly() throws Exception {
    Path base = tmp.resolve("distilbert-base");
    Map<String, Tensor> t = new LinkedHashMap<>(TinyModels.tensors(TinyModels.DISTILBERT, 3));
    t.keySet().removeIf(k -> k.startsWith("classifier") || k.startsWith("pre_classifier"));
    ModelDirectory.write(base, TinyModels.DISTILBERT.configJson(1, 2), t);
    List<String> pre = List.of("pre_classifier.weight", "pre_classifier.bias");
    List<String> head = List.of("classifier.weight", "classifier.bias");
    try (LanguageModel m = LanguageModel.load(base, Device.cpu(), DataType.FLOAT32)) {
      assertEquals(head, LoraModel.create(m, LoraConfig.of(2, 4, List.of("all-linear"))).biases(), "PEFT's SEQ_CLS default: the classifier alone");
      LoraModel lora = LoraModel.create(m, LoraConfig.of(2, 4, List.of("all-linear")).withModulesToSave(List.of("pre_classifier", "classifier")));
      assertEquals(List.of("q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"),
          lora.targets().stream().filter(x -> x.module().layer() == 0).map(x -> x.module().shortName()).toList());
      List<String> whole = new java.util.ArrayList<>(pre);
      whole.addAll(head);
      assertEquals(whole, lora.biases());
      float[] p = TinyModels.trained(lora, 5);
      float[] unmerged = logits(lora, p);
      Path out = tmp.resolve("distilbert-adapter");
      AdapterFormat.write(out, lora, p, Map.of());
      AdapterFormat.Loaded back = AdapterFormat.read(out, ModelSkeleton.read(base));
      assertEquals(whole, back.model().biases());
      assertArrayEquals(p, back.values());
      lora.merge(p);
      assertArrayEquals(unmerged, logits(new FrozenModel(m), new float[0]), 1e-5f);
      Path export = tmp.resolve("distilbert-merged");
      ModelDirectory.export(export, m, base);
      try (LanguageModel reloaded = LanguageModel.load(export, Device.cpu(), DataType.FLOAT32)) {
        assertArrayEquals(unmerged, logits(new FrozenModel(reloaded), new float[0]), 1e-5f);
      }
      lora.unmerge(p);
    }
  }
}
