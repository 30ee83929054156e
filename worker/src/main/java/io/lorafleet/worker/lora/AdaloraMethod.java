package io.lorafleet.worker.lora;

import ai.djl.ndarray.NDArray;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.worker.flat.FlatLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Random;
import java.util.TreeMap;
import java.util.function.Function;

/**
 * AdaLoRA (Zhang et al. 2023; PEFT's tuners/adalora): each module trains A (k, in), E (k, 1) and B
 * (out, k) with ΔW = B·(A⊙E)·lora_alpha/(init_r + 1e-5), k = init_r while training, and the driver
 * masks E to a shrinking rank budget ({@code targetR} per module on average) by importance.
 * {@code rankPattern} is the allocation, as PEFT saves it: per "&lt;module&gt;.lora_E", one boolean
 * per initial rank; a saved adapter holds only the kept ranks.
 */
public record AdaloraMethod(int initR, int targetR, int tinit, int tfinal, int deltaT, double beta1, double beta2, double orthRegWeight,
    int totalStep, Map<String, List<Boolean>> rankPattern) implements PeftMethod {

  public AdaloraMethod {
    if (initR <= 0 || targetR <= 0 || targetR > initR) {
      throw new IllegalArgumentException("AdaLoRA needs 0 < target_r <= init_r but found target_r " + targetR + ", init_r " + initR);
    }
    if (totalStep <= 0 || tinit < 0 || tfinal < 0 || tinit >= totalStep - tfinal) {
      throw new IllegalArgumentException("AdaLoRA needs total_step > 0 and tinit < total_step - tfinal but found total_step " + totalStep
          + ", tinit " + tinit + ", tfinal " + tfinal);
    }
    if (deltaT <= 0 || !(beta1 > 0 && beta1 < 1) || !(beta2 > 0 && beta2 < 1) || orthRegWeight < 0) {
      throw new IllegalArgumentException("AdaLoRA needs deltaT > 0, beta1 and beta2 in (0, 1) and orth_reg_weight >= 0 but found deltaT "
          + deltaT + ", beta1 " + beta1 + ", beta2 " + beta2 + ", orth_reg_weight " + orthRegWeight);
    }
    Map<String, List<Boolean>> copy = new TreeMap<>();
    rankPattern.forEach((k, v) -> copy.put(k, List.copyOf(v)));
    rankPattern = Collections.unmodifiableMap(copy);
  }

  /** Before any allocation. */
  public static AdaloraMethod of(int initR, int targetR, int tinit, int tfinal, int deltaT, double beta1, double beta2, double orthRegWeight,
      int totalStep) {
    return new AdaloraMethod(initR, targetR, tinit, tfinal, deltaT, beta1, beta2, orthRegWeight, totalStep, Map.of());
  }

  public AdaloraMethod withRankPattern(Map<String, List<Boolean>> pattern) {
    return new AdaloraMethod(initR, targetR, tinit, tfinal, deltaT, beta1, beta2, orthRegWeight, totalStep, pattern);
  }

  /** The kept ranks of {@code module}: init_r before any allocation. */
  public int rankOf(String module) {
    List<Boolean> kept = rankPattern.get(module + ".lora_E");
    return kept == null ? initR : (int) kept.stream().filter(b -> b).count();
  }

  @Override
  public String name() {
    return "adalora";
  }

  @Override
  public String peftType() {
    return "ADALORA";
  }

  @Override
  public void validate(LoraConfig c) {
    if (c.useRslora() || !c.rankPattern().isEmpty() || !c.alphaPattern().isEmpty()) {
      throw new IllegalArgumentException("AdaLoRA takes none of use_rslora or a LoRA rank/alpha pattern (its rank_pattern is its own allocation)");
    }
  }

  @Override
  public int rank(LoraConfig c, String module) {
    return rankOf(module);
  }

  /** PEFT's SVDLinear: scaling (lora_alpha itself) over ranknum, which stays init_r after truncation. */
  @Override
  public double scale(LoraConfig c, String module) {
    return c.loraAlpha() / (initR + 1e-5);
  }

  @Override
  public void addSlots(FlatLayout.Builder b, LoraConfig c, List<LoraTarget> targets) {
    for (LoraTarget t : targets) {
      b.add(t.keyAdaA(), t.rank(), t.module().in());
      b.add(t.keyAdaE(), t.rank(), 1);
      b.add(t.keyAdaB(), t.module().out(), t.rank());
    }
  }

  /** PEFT's AdaLoraLayer.reset_lora_parameters: E = 0, A and B ~ N(0, 0.02²). */
  @Override
  public void init(LoraModel m, float[] flat, Random rng) {
    for (LoraTarget t : m.targets()) {
      for (String key : List.of(t.keyAdaA(), t.keyAdaB())) {
        FlatLayout.Slot s = m.layout().slot(key).orElseThrow();
        for (int i = 0; i < s.size(); i++) {
          flat[s.offset() + i] = (float) (rng.nextGaussian() * 0.02);
        }
      }
    }
  }

  @Override
  public NDArray delta(Function<String, NDArray> tensor, LoraTarget t) {
    NDArray ae = tensor.apply(t.keyAdaA()).mul(tensor.apply(t.keyAdaE())); // (k, in) ⊙ (k, 1)
    return ae.transpose().matMul(tensor.apply(t.keyAdaB()).transpose()).mul(t.scale());
  }

  /** PEFT's SVDLinear: x·(A⊙E)ᵀ·Bᵀ·scaling/ranknum, LoRA's term over A⊙E. */
  @Override
  public LoraDelta.Factors factors(LoraModel.Binding b, LoraTarget t, int index) {
    return new LoraDelta.Factors(b.tensor(t.keyAdaA()).mul(b.tensor(t.keyAdaE())), b.tensor(t.keyAdaB()), t.scale(), index, LoraDelta.PLAIN);
  }

  /** asdict(AdaLoraConfig): LoraConfig's fields and its own (peft/tuners/adalora/config.py). */
  @Override
  public ObjectNode configJson(LoraModel model) {
    ObjectNode n = AdapterFormat.loraConfigJson(model);
    n.put("use_dora", false);
    n.put("peft_type", "ADALORA");
    n.put("beta1", beta1);
    n.put("beta2", beta2);
    n.put("deltaT", deltaT);
    n.put("init_r", initR);
    n.put("orth_reg_weight", orthRegWeight);
    n.put("target_r", targetR);
    n.put("tfinal", tfinal);
    n.put("tinit", tinit);
    n.put("total_step", totalStep);
    if (rankPattern.isEmpty()) {
      n.putNull("rank_pattern");
    } else {
      ObjectNode rp = n.putObject("rank_pattern");
      rankPattern.forEach((k, v) -> {
        ArrayNode l = rp.putArray(k);
        v.forEach(l::add);
      });
    }
    return n;
  }

  @Override
  public Optional<String> notAveraged() {
    return Optional.of("--peft-type adalora: averaging those adapters is not supported");
  }

  @Override
  public Optional<String> notMixable() {
    return Optional.of("AdaLoRA");
  }

  @Override
  public Optional<String> notContinued() {
    return rankPattern.isEmpty() ? Optional.empty() : Optional.of("an AdaLoRA adapter cut to its allocated ranks; continuing its training is not "
        + "supported (train from a checkpoint of its run, which keeps every rank)");
  }

  /** Its allocation changes as it trains: everything else must match. */
  @Override
  public PeftMethod identity() {
    return withRankPattern(Map.of());
  }

  @Override
  public String rankText(LoraConfig c) {
    return initR + " (init_r), target_r " + targetR;
  }

  /**
   * {@code m} cut down to the ranks {@code pattern} keeps (per "&lt;module&gt;.lora_E", one boolean per
   * rank of m), as PEFT's resize_state_dict_by_rank_pattern saves it: rows of A and E, columns of B.
   * The pattern goes into the config; ranknum, and so the scaling, stays init_r.
   */
  public LoraModel.Values truncate(LoraModel m, float[] flat, Map<String, List<Boolean>> pattern) {
    LoraModel cut = LoraModel.create(m.structure(), m.config().withMethod(withRankPattern(pattern)));
    float[] out = new float[cut.layout().size()];
    FlatLayout layout = m.layout();
    for (LoraTarget t : m.targets()) {
      List<Boolean> keep = pattern.get(t.module().name() + ".lora_E");
      if (keep == null || keep.size() != t.rank()) {
        throw new IllegalArgumentException("the rank pattern holds " + (keep == null ? "nothing" : keep.size() + " ranks") + " for " + t.module().name()
            + ".lora_E but the module has " + t.rank());
      }
      FlatLayout.Slot a = layout.slot(t.keyAdaA()).orElseThrow();
      FlatLayout.Slot e = layout.slot(t.keyAdaE()).orElseThrow();
      FlatLayout.Slot b = layout.slot(t.keyAdaB()).orElseThrow();
      FlatLayout.Slot ca = cut.layout().slot(t.keyAdaA()).orElseThrow();
      FlatLayout.Slot ce = cut.layout().slot(t.keyAdaE()).orElseThrow();
      FlatLayout.Slot cb = cut.layout().slot(t.keyAdaB()).orElseThrow();
      int in = t.module().in();
      int k = (int) ce.shape()[0];
      int j = 0;
      for (int r = 0; r < t.rank(); r++) {
        if (!keep.get(r)) {
          continue;
        }
        System.arraycopy(flat, a.offset() + r * in, out, ca.offset() + j * in, in);
        out[ce.offset() + j] = flat[e.offset() + r];
        for (int o = 0; o < t.module().out(); o++) {
          out[cb.offset() + o * k + j] = flat[b.offset() + o * t.rank() + r];
        }
        j++;
      }
    }
    for (String bias : m.biases()) {
      FlatLayout.Slot from = layout.slot(m.biasKey(bias)).orElseThrow();
      System.arraycopy(flat, from.offset(), out, cut.layout().slot(cut.biasKey(bias)).orElseThrow().offset(), from.size());
    }
    return new LoraModel.Values(cut, out);
  }

  /** peft_type ADALORA; --peft-type adalora with --init-r, --target-r, --tinit, --tfinal, --delta-t, --beta1, --beta2, --orth-reg-weight, --total-step. */
  public static final class Provider implements PeftMethod.Provider {
    @Override
    public List<String> names() {
      return List.of("adalora");
    }

    @Override
    public List<String> peftTypes() {
      return List.of("ADALORA");
    }

    /** The allocation is rank_pattern's: one boolean per initial rank. */
    @Override
    public LoraConfig read(Path file, JsonNode n, AdapterFormat.Fields fields) {
      Map<String, List<Boolean>> kept = new TreeMap<>();
      n.path("rank_pattern").fields().forEachRemaining(e -> {
        List<Boolean> b = new ArrayList<>();
        e.getValue().forEach(x -> b.add(x.asBoolean()));
        kept.put(e.getKey(), b);
      });
      return fields.lora(n).withMethod(new AdaloraMethod(n.path("init_r").asInt(12), n.path("target_r").asInt(8), n.path("tinit").asInt(0),
          n.path("tfinal").asInt(0), n.path("deltaT").asInt(1), n.path("beta1").asDouble(0.85), n.path("beta2").asDouble(0.85),
          n.path("orth_reg_weight").asDouble(0.5), n.path("total_step").asInt(0), kept));
    }

    /** --total-step 0 (the default) is the run's --steps. */
    @Override
    public LoraConfig configure(String name, PeftMethods.Options options, LoraConfig base) {
      int total = options.integer("total-step", 0);
      return base.withMethod(AdaloraMethod.of(options.integer("init-r", 12), options.integer("target-r", 8), options.integer("tinit", 0),
          options.integer("tfinal", 0), options.integer("delta-t", 1), options.real("beta1", 0.85), options.real("beta2", 0.85),
          options.real("orth-reg-weight", 0.5), total > 0 ? total : options.integer("steps", 1)));
    }
  }
}
