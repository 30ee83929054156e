package io.lorafleet.worker.lora;

import ai.djl.ndarray.NDArray;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.worker.flat.FlatLayout;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import java.util.function.Function;

/**
 * LoRA (Hu et al. 2021; PEFT's tuners/lora): per target A (r, in) and B (out, r), ΔW = s·B·A with
 * s = lora_alpha/r (or /√r with use_rslora). PEFT's init: A Kaiming-uniform(a=√5), i.e.
 * U(±1/√in), or N(0, 1/r) for "gaussian", and B = 0; for "false", A and B as nn.Linear leaves them,
 * U(±1/√in) and U(±1/√r).
 */
public record LoraMethod() implements PeftMethod {
  public static final LoraMethod INSTANCE = new LoraMethod();

  @Override
  public String name() {
    return "lora";
  }

  @Override
  public String peftType() {
    return "LORA";
  }

  @Override
  public void addSlots(FlatLayout.Builder b, LoraConfig c, List<LoraTarget> targets) {
    targets.forEach(t -> addFactors(b, t));
  }

  /** A (r, in) and B (out, r) of one target, which DoRA shares. */
  static void addFactors(FlatLayout.Builder b, LoraTarget t) {
    b.add(t.keyA(), t.rank(), t.module().in());
    b.add(t.keyB(), t.module().out(), t.rank());
  }

  @Override
  public void init(LoraModel m, float[] flat, Random rng) {
    initFactors(m, flat, rng);
  }

  /** LoRA's init of A and B, which DoRA shares. */
  static void initFactors(LoraModel m, float[] flat, Random rng) {
    FlatLayout layout = m.layout();
    String init = m.config().initLoraWeights();
    for (LoraTarget t : m.targets()) {
      FlatLayout.Slot a = layout.slot(t.keyA()).orElseThrow();
      double bound = 1.0 / Math.sqrt(t.module().in());
      for (int i = 0; i < a.size(); i++) {
        flat[a.offset() + i] = init.equals("gaussian") ? (float) (rng.nextGaussian() / t.rank()) : (float) ((rng.nextDouble() * 2 - 1) * bound);
      }
      if (init.equals("false")) {
        FlatLayout.Slot b = layout.slot(t.keyB()).orElseThrow();
        double boundB = 1.0 / Math.sqrt(t.rank());
        for (int i = 0; i < b.size(); i++) {
          flat[b.offset() + i] = (float) ((rng.nextDouble() * 2 - 1) * boundB);
        }
      }
    }
  }

  @Override
  public NDArray delta(Function<String, NDArray> tensor, LoraTarget t) {
    return tensor.apply(t.keyA()).transpose().matMul(tensor.apply(t.keyB()).transpose()).mul(t.scale());
  }

  @Override
  public LoraDelta.Factors factors(LoraModel.Binding b, LoraTarget t, int index) {
    return new LoraDelta.Factors(b.tensor(t.keyA()), b.tensor(t.keyB()), t.scale(), index, LoraDelta.PLAIN);
  }

  @Override
  public ObjectNode configJson(LoraModel model) {
    ObjectNode n = AdapterFormat.loraConfigJson(model);
    n.put("use_dora", false);
    return n;
  }

  /** LoRA and its DoRA variant: peft_type LORA, told apart by use_dora; --peft-type lora (with --use-dora) or dora. */
  public static final class Provider implements PeftMethod.Provider {
    @Override
    public List<String> names() {
      return List.of("lora", "dora");
    }

    @Override
    public List<String> peftTypes() {
      return List.of("LORA");
    }

    @Override
    public LoraConfig read(Path file, JsonNode n, AdapterFormat.Fields fields) {
      return fields.lora(n).withMethod(n.path("use_dora").asBoolean(false) ? DoraMethod.INSTANCE : INSTANCE);
    }

    @Override
    public LoraConfig configure(String name, PeftMethods.Options options, LoraConfig base) {
      return base.withMethod(name.equals("dora") || options.flag("use-dora") ? DoraMethod.INSTANCE : INSTANCE);
    }
  }
}
