package io.lorafleet.worker.lora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.index.NDIndex;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.worker.flat.FlatLayout;
import io.lorafleet.worker.model.Architecture;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import java.util.Random;
import java.util.function.Function;

/**
 * VeRA (Kopiczko et al. 2024; PEFT's tuners/vera): r is the rank of the shared frozen projections
 * vera_A (r, max in) and vera_B (max out, r), drawn from {@code projectionPrngKey}; each layer
 * trains λ_b (out, from 0) and λ_d (r, from {@code dInitial}), and ΔW = diag(λ_b)·B·diag(λ_d)·A on
 * the slices of the projections, with no alpha scaling.
 */
public record VeraMethod(double dInitial, long projectionPrngKey) implements PeftMethod {
  /** VeRA's shared projections, as PEFT saves them (save_projection). */
  public static final String VERA_A = "base_model.vera_A";
  public static final String VERA_B = "base_model.vera_B";

  public VeraMethod {
    if (!(dInitial == dInitial)) {
      throw new IllegalArgumentException("d_initial must be a number but found " + dInitial);
    }
  }

  @Override
  public String name() {
    return "vera";
  }

  @Override
  public String peftType() {
    return "VERA";
  }

  @Override
  public void validate(LoraConfig c) {
    if (c.useRslora() || !c.rankPattern().isEmpty() || !c.alphaPattern().isEmpty() || !c.initLoraWeights().equals("kaiming")) {
      throw new IllegalArgumentException("VeRA takes none of use_rslora, rank_pattern, alpha_pattern or init_lora_weights (found use_rslora "
          + c.useRslora() + ", rank_pattern " + c.rankPattern() + ", alpha_pattern " + c.alphaPattern() + ", init_lora_weights "
          + c.initLoraWeights() + ")");
    }
  }

  @Override
  public double scale(LoraConfig c, String module) {
    return 1.0; // VeRA scales through λ_b and λ_d
  }

  /** The shared projections, sized for the widest adapted module, then λ_b and λ_d per module. */
  @Override
  public void addSlots(FlatLayout.Builder b, LoraConfig c, List<LoraTarget> targets) {
    b.addFrozen(VERA_A, c.r(), targets.stream().mapToInt(t -> t.module().in()).max().orElse(0));
    b.addFrozen(VERA_B, targets.stream().mapToInt(t -> t.module().out()).max().orElse(0), c.r());
    for (LoraTarget t : targets) {
      b.add(t.keyLambdaB(), t.module().out());
      b.add(t.keyLambdaD(), t.rank());
    }
  }

  /**
   * As PEFT's: vera_A and vera_B Kaiming-uniform with gain √2, U(±√(6/fan_in)), drawn from
   * projection_prng_key alone (so every run with that key shares them; the stream is Java's, not
   * torch's, which is why the projections are always saved); λ_b = 0, λ_d = d_initial.
   */
  @Override
  public void init(LoraModel m, float[] flat, Random rng) {
    FlatLayout layout = m.layout();
    Random prng = new Random(projectionPrngKey);
    for (String key : List.of(VERA_A, VERA_B)) {
      FlatLayout.Slot s = layout.slot(key).orElseThrow();
      double bound = Math.sqrt(6.0 / s.shape()[1]);
      for (int i = 0; i < s.size(); i++) {
        flat[s.offset() + i] = (float) ((prng.nextDouble() * 2 - 1) * bound);
      }
    }
    for (LoraTarget t : m.targets()) {
      FlatLayout.Slot d = layout.slot(t.keyLambdaD()).orElseThrow();
      Arrays.fill(flat, d.offset(), d.offset() + d.size(), (float) dInitial);
    }
  }

  /** (A_sliced ᵀ·diag(λ_d))·B_slicedᵀ·diag(λ_b), with A_sliced = vera_A[:, :in], B_sliced = vera_B[:out, :]. */
  @Override
  public NDArray delta(Function<String, NDArray> tensor, LoraTarget t) {
    NDArray a = sliceA(tensor, t);
    NDArray b = sliceB(tensor, t);
    return a.transpose().mul(tensor.apply(t.keyLambdaD())).matMul(b.transpose()).mul(tensor.apply(t.keyLambdaB()));
  }

  @Override
  public LoraDelta.Factors factors(LoraModel.Binding b, LoraTarget t, int index) {
    return new LoraDelta.Factors(sliceA(b::tensor, t), sliceB(b::tensor, t), 1.0, index, new LoraDelta.Vera(b.tensor(t.keyLambdaB()), b.tensor(t.keyLambdaD())));
  }

  /** vera_A[:, :in] (r, in): the part of the shared projection one module reads. */
  private static NDArray sliceA(Function<String, NDArray> tensor, LoraTarget t) {
    return tensor.apply(VERA_A).get(new NDIndex(":, :" + t.module().in()));
  }

  /** vera_B[:out, :] (out, r). */
  private static NDArray sliceB(Function<String, NDArray> tensor, LoraTarget t) {
    return tensor.apply(VERA_B).get(new NDIndex(":" + t.module().out() + ", :"));
  }

  /** VeRA's A is shared by every module: nothing to fuse. */
  @Override
  public boolean fusesInputs() {
    return false;
  }

  /** asdict(VeraConfig) as PEFT writes it (peft/tuners/vera/config.py); the projections are always saved. */
  @Override
  public ObjectNode configJson(LoraModel model) {
    LoraConfig c = model.config();
    ObjectNode n = AdapterFormat.JSON.createObjectNode();
    n.putNull("auto_mapping");
    n.put("base_model_name_or_path", c.baseModelNameOrPath());
    n.put("bias", c.bias().equals("lora_only") ? "vera_only" : c.bias());
    n.put("d_initial", dInitial);
    n.put("fan_in_fan_out", model.structure().config().arch() == Architecture.GPT2);
    n.put("inference_mode", true);
    n.put("init_weights", true);
    n.putNull("layers_pattern");
    AdapterFormat.putLayers(n, c);
    AdapterFormat.putTask(n, model);
    n.put("peft_type", "VERA");
    n.put("projection_prng_key", projectionPrngKey);
    n.put("r", c.r());
    n.putNull("revision");
    n.put("save_projection", true);
    AdapterFormat.putTargets(n, c);
    n.put("vera_dropout", c.loraDropout());
    return n;
  }

  @Override
  public Optional<String> notAveraged() {
    return Optional.of("--peft-type vera: averaging those adapters is not supported");
  }

  @Override
  public Optional<String> notMixable() {
    return Optional.of("VeRA");
  }

  /** peft_type VERA; --peft-type vera, with --d-initial and --projection-prng-key, and r 256 unless --r is given (VeraConfig's default). */
  public static final class Provider implements PeftMethod.Provider {
    @Override
    public List<String> names() {
      return List.of("vera");
    }

    @Override
    public List<String> peftTypes() {
      return List.of("VERA");
    }

    /** VeraConfig: r (default 256), vera_dropout, d_initial, projection_prng_key; bias vera_only is LoRA's lora_only. */
    @Override
    public LoraConfig read(Path file, JsonNode n, AdapterFormat.Fields fields) {
      if (!n.path("save_projection").asBoolean(true)) {
        throw new IllegalArgumentException(file + ": save_projection is false; a VeRA adapter without its projections cannot be rebuilt here "
            + "(they come from torch's generator), expected true");
      }
      int r = n.path("r").asInt(256);
      String bias = n.path("bias").asText("none");
      return LoraConfig.of(r, r, fields.targets()).withTargets(fields.targets(), fields.regex())
          .withDropout(n.path("vera_dropout").asDouble(0)).withLayers(fields.layers())
          .withBias(bias.equals("vera_only") ? "lora_only" : bias).withBaseModel(fields.baseModel())
          .withMethod(new VeraMethod(n.path("d_initial").asDouble(0.1), n.path("projection_prng_key").asLong(0)));
    }

    @Override
    public LoraConfig configure(String name, PeftMethods.Options options, LoraConfig base) {
      return (options.given("r") ? base : base.withR(256)).withMethod(new VeraMethod(options.real("d-initial", 0.1), options.longValue("projection-prng-key", 0)));
    }
  }
}
