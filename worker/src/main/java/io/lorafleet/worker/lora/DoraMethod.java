package io.lorafleet.worker.lora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.worker.flat.FlatLayout;
import io.lorafleet.worker.model.LanguageModel;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import java.util.Random;
import java.util.function.Function;

/**
 * DoRA (Liu et al. 2024; PEFT's use_dora, its DoraLinearVariant): LoRA's A and B plus a trainable
 * magnitude m per output row, W' = m·(W0 + s·B·A)/‖W0 + s·B·A‖ (see {@link LoraDelta.Dora} for the
 * forward). The initial magnitudes are ‖W0 + s·B·A‖ of the loaded base (PEFT's
 * DoraLinearLayer.update_layer), so a driver without the weights takes them from a worker.
 */
public record DoraMethod() implements PeftMethod {
  public static final DoraMethod INSTANCE = new DoraMethod();

  @Override
  public String name() {
    return "dora";
  }

  @Override
  public String peftType() {
    return "LORA";
  }

  @Override
  public void addSlots(FlatLayout.Builder b, LoraConfig c, List<LoraTarget> targets) {
    for (LoraTarget t : targets) { // per target A, B, then m
      LoraMethod.addFactors(b, t);
      b.add(t.keyM(), t.module().out());
    }
  }

  @Override
  public void init(LoraModel m, float[] flat, Random rng) {
    LoraMethod.initFactors(m, flat, rng);
  }

  /** The magnitudes from the loaded base; without its weights, NaN, for the driver to take from a worker ({@link #takeBaseValues}). */
  @Override
  public float[] afterInit(LoraModel m, float[] flat) {
    if (m.structure() instanceof LanguageModel) {
      return withBaseValues(m, flat);
    }
    for (LoraTarget t : m.targets()) {
      FlatLayout.Slot s = m.layout().slot(t.keyM()).orElseThrow();
      Arrays.fill(flat, s.offset(), s.offset() + s.size(), Float.NaN);
    }
    return flat;
  }

  @Override
  public boolean needsBaseValues(LoraModel m, float[] flat) {
    return m.targets().stream().anyMatch(t -> Float.isNaN(flat[m.layout().slot(t.keyM()).orElseThrow().offset()]));
  }

  /** m = ‖W0 + s·B·A‖ per output row of torch's [out, in] weight (for GPT-2's Conv1D, of its transpose); ‖W0‖ when B = 0. */
  @Override
  public float[] withBaseValues(LoraModel m, float[] flat) {
    float[] out = flat.clone();
    try (NDManager scope = m.base().manager().newSubManager()) {
      for (LoraTarget t : m.targets()) {
        NDArray n = m.rowNorms(scope, t, flat);
        FlatLayout.Slot slot = m.layout().slot(t.keyM()).orElseThrow();
        System.arraycopy(n.toType(DataType.FLOAT32, false).toFloatArray(), 0, out, slot.offset(), slot.size());
      }
    }
    return out;
  }

  /** Takes the magnitudes the worker of rank 0 computed from the base weights, and nothing else it sent. */
  @Override
  public void takeBaseValues(LoraModel m, float[] params, float[] got) {
    for (LoraTarget t : m.targets()) {
      FlatLayout.Slot s = m.layout().slot(t.keyM()).orElseThrow();
      for (int i = s.offset(); i < s.offset() + s.size(); i++) {
        if (!(got[i] > 0) || !Float.isFinite(got[i])) {
          throw new IllegalStateException("the initial DoRA magnitude " + t.keyM() + "[" + (i - s.offset()) + "] came back as " + got[i]
              + ", expected a positive row norm: the base weight has an all-zero or non-finite row");
        }
      }
      System.arraycopy(got, s.offset(), params, s.offset(), s.size());
    }
  }

  @Override
  public NDArray delta(Function<String, NDArray> tensor, LoraTarget t) {
    return LoraMethod.INSTANCE.delta(tensor, t);
  }

  @Override
  public LoraDelta.Factors factors(LoraModel.Binding b, LoraTarget t, int index) {
    LoraModel m = b.model();
    // ‖W0 + s·B·A‖ per output, detached as PEFT detaches it (DoRA paper, section 4.3)
    NDArray norm = m.detachedNorms(b.step(), t, b.flat());
    NDArray w = m.base().weight(t.module().weightKey());
    Optional<NDArray> bias = t.module().biasKey().map(k -> b.overrides().getOrDefault(k, m.base().weight(k)));
    return new LoraDelta.Factors(b.tensor(t.keyA()), b.tensor(t.keyB()), t.scale(), index, new LoraDelta.Dora(b.tensor(t.keyM()), norm, w, bias));
  }

  /** W' = (m/n)·(W0 + ΔW), n = ‖W0 + ΔW‖ per output (PEFT's DoRA merge); unmerge, W0 = W'·(n/m) − ΔW with the n kept at merge. */
  @Override
  public void merge(LoraModel m, NDManager scope, LoraTarget t, NDArray w, NDArray delta, float[] flat, int sign) {
    LanguageModel base = m.base();
    NDArray mag = scope.create(m.layout().slice(flat, m.layout().slot(t.keyM()).orElseThrow()), new Shape(t.module().out()))
        .toType(base.dtype(), false);
    if (sign > 0) {
      w.addi(delta);
      NDArray n = w.square().sum(new int[] {0}).sqrt();
      w.muli(mag.div(n));
      NDArray kept = n.duplicate();
      kept.attach(base.manager());
      m.mergeState().put(t.module().name(), kept);
    } else {
      NDArray n = m.mergeState().remove(t.module().name());
      if (n == null) {
        throw new IllegalStateException(t.module().name() + " was not merged by this model: a DoRA unmerge needs the norms of its merge");
      }
      w.muli(n.div(mag));
      w.subi(delta);
      n.close();
    }
  }

  @Override
  public ObjectNode configJson(LoraModel model) {
    ObjectNode n = AdapterFormat.loraConfigJson(model);
    n.put("use_dora", true);
    return n;
  }

  @Override
  public Optional<String> notAveraged() {
    return Optional.of("--use-dora: averaging DoRA adapters is not supported (the magnitude of an average is not the average of the magnitudes)");
  }

  @Override
  public Optional<String> notOverQuantizedBase() {
    return Optional.of("--use-dora: DoRA over a quantized base is not supported yet");
  }

  @Override
  public Optional<String> notMixable() {
    return Optional.of("DoRA");
  }
}
