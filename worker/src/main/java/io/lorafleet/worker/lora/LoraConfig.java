package io.lorafleet.worker.lora;

import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * PEFT's LoraConfig, the fields lorafleet honours, with PEFT's names and semantics
 * (peft/tuners/lora/config.py). ΔW = (α/r)·B·A, or α/√r with {@code useRslora}.
 *
 * @param targetModules module names matched as PEFT does (exact name or ".name" suffix), the single
 *     entry "all-linear", or, when {@code targetRegex} is set, one regex matched against the full
 *     module path
 * @param layersToTransform empty for all layers
 * @param rankPattern regex (matched as PEFT: "(.*\.)?key$") → rank
 * @param alphaPattern regex → alpha
 * @param bias "none", "lora_only" or "all"
 * @param vera VeRA instead of LoRA's own factors ({@link Vera#OFF} for LoRA)
 * @param useDora DoRA (Liu et al. 2024, PEFT's use_dora): a trainable magnitude per output row; see {@link LoraDelta}
 * @param initLoraWeights "kaiming" (PEFT's {@code true}: A ~ U(±1/√in), B = 0), "gaussian" (A ~ N(0, (1/r)²), B = 0) or
 *     "false" (PEFT's {@code false}: no LoRA init, so A and B keep nn.Linear's, U(±1/√in) and U(±1/√r); the adapter
 *     changes the model from the start, for tests)
 */
public record LoraConfig(
    int r,
    double loraAlpha,
    double loraDropout,
    List<String> targetModules,
    boolean targetRegex,
    List<Integer> layersToTransform,
    Map<String, Integer> rankPattern,
    Map<String, Double> alphaPattern,
    String bias,
    boolean useRslora,
    String initLoraWeights,
    String baseModelNameOrPath,
    boolean useDora,
    Vera vera,
    Adalora adalora) implements java.io.Serializable {

  /**
   * AdaLoRA (Zhang et al. 2023; PEFT's AdaLoraConfig): when {@code on}, each module trains A (k, in),
   * E (k, 1) and B (out, k) with ΔW = B·(A⊙E)·lora_alpha/(init_r + 1e-5), k = init_r while training,
   * and the driver masks E to a shrinking rank budget ({@code targetR} per module on average) by
   * importance. {@code rankPattern} is the allocation, as PEFT saves it: per "&lt;module&gt;.lora_E", one
   * boolean per initial rank; a saved adapter holds only the kept ranks.
   */
  public record Adalora(boolean on, int initR, int targetR, int tinit, int tfinal, int deltaT, double beta1, double beta2, double orthRegWeight,
      int totalStep, Map<String, List<Boolean>> rankPattern) implements java.io.Serializable {
    public static final Adalora OFF = new Adalora(false, 12, 8, 0, 0, 1, 0.85, 0.85, 0.5, 1, Map.of());

    public Adalora {
      if (on) {
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
      }
      Map<String, List<Boolean>> copy = new java.util.TreeMap<>();
      rankPattern.forEach((k, v) -> copy.put(k, List.copyOf(v)));
      rankPattern = java.util.Collections.unmodifiableMap(copy);
    }

    public static Adalora of(int initR, int targetR, int tinit, int tfinal, int deltaT, double beta1, double beta2, double orthRegWeight, int totalStep) {
      return new Adalora(true, initR, targetR, tinit, tfinal, deltaT, beta1, beta2, orthRegWeight, totalStep, Map.of());
    }

    public Adalora withRankPattern(Map<String, List<Boolean>> pattern) {
      return new Adalora(on, initR, targetR, tinit, tfinal, deltaT, beta1, beta2, orthRegWeight, totalStep, pattern);
    }

    /** The kept ranks of {@code module}: init_r before any allocation. */
    public int rankOf(String module) {
      List<Boolean> kept = rankPattern.get(module + ".lora_E");
      return kept == null ? initR : (int) kept.stream().filter(b -> b).count();
    }
  }

  /**
   * VeRA (Kopiczko et al. 2024; PEFT's VeraConfig): when {@code on}, r is the rank of the shared
   * frozen projections vera_A (r, max in) and vera_B (max out, r), drawn from {@code
   * projectionPrngKey}; each layer trains λ_b (out, from 0) and λ_d (r, from {@code dInitial}), and
   * ΔW = diag(λ_b)·B·diag(λ_d)·A on the slices of the projections, with no alpha scaling.
   */
  public record Vera(boolean on, double dInitial, long projectionPrngKey) implements java.io.Serializable {
    public static final Vera OFF = new Vera(false, 0.1, 0);

    public static Vera of(double dInitial, long projectionPrngKey) {
      return new Vera(true, dInitial, projectionPrngKey);
    }
  }

  public LoraConfig {
    if (r <= 0) {
      throw new IllegalArgumentException("lora r must be > 0 but found " + r);
    }
    if (!(loraAlpha > 0)) {
      throw new IllegalArgumentException("lora_alpha must be > 0 but found " + loraAlpha);
    }
    if (loraDropout < 0 || loraDropout >= 1) {
      throw new IllegalArgumentException("lora_dropout must be in [0, 1) but found " + loraDropout);
    }
    if (targetModules.isEmpty()) {
      throw new IllegalArgumentException("target_modules must name at least one module");
    }
    if (targetRegex && targetModules.size() != 1) {
      throw new IllegalArgumentException("a regex target_modules is one string, found " + targetModules.size());
    }
    if (!List.of("none", "lora_only", "all").contains(bias)) {
      throw new IllegalArgumentException("bias must be none, lora_only or all but found '" + bias + "'");
    }
    if (!List.of("kaiming", "gaussian", "false").contains(initLoraWeights)) {
      throw new IllegalArgumentException("init_lora_weights must be true, gaussian or false but found '" + initLoraWeights + "'");
    }
    rankPattern.forEach((k, v) -> {
      if (v <= 0) {
        throw new IllegalArgumentException("rank_pattern['" + k + "'] must be > 0 but found " + v);
      }
    });
    alphaPattern.forEach((k, v) -> {
      if (!(v > 0)) {
        throw new IllegalArgumentException("alpha_pattern['" + k + "'] must be > 0 but found " + v);
      }
    });
    if (vera.on() && (useDora || useRslora || !rankPattern.isEmpty() || !alphaPattern.isEmpty() || !initLoraWeights.equals("kaiming"))) {
      throw new IllegalArgumentException("VeRA takes none of use_dora, use_rslora, rank_pattern, alpha_pattern or init_lora_weights "
          + "(found use_dora " + useDora + ", use_rslora " + useRslora + ", rank_pattern " + rankPattern + ", alpha_pattern " + alphaPattern
          + ", init_lora_weights " + initLoraWeights + ")");
    }
    if (adalora.on() && (vera.on() || useDora || useRslora || !rankPattern.isEmpty() || !alphaPattern.isEmpty())) {
      throw new IllegalArgumentException("AdaLoRA takes none of VeRA, use_dora, use_rslora or a LoRA rank/alpha pattern (its rank_pattern is "
          + "its own allocation)");
    }
    if (vera.on() && !(vera.dInitial() == vera.dInitial())) {
      throw new IllegalArgumentException("d_initial must be a number but found " + vera.dInitial());
    }
    targetModules = List.copyOf(targetModules);
    layersToTransform = List.copyOf(layersToTransform);
    rankPattern = Map.copyOf(rankPattern);
    alphaPattern = Map.copyOf(alphaPattern);
  }

  public static LoraConfig of(int r, double alpha, List<String> targets) {
    return new LoraConfig(r, alpha, 0.0, targets, false, List.of(), Map.of(), Map.of(), "none", false, "kaiming", "", false, Vera.OFF, Adalora.OFF);
  }

  /**
   * Rank r and alpha over {@code targetModules} as PEFT takes target_modules from a command line:
   * module names separated by commas (each matched exactly or as a ".name" suffix), "all-linear",
   * or, when the value holds anything but letters, digits, '_', '-', commas and spaces, one regex
   * matched against the full module path. The one reading of --target-modules, for every command.
   */
  public static LoraConfig ofTargetModules(int r, double alpha, String targetModules) {
    String t = targetModules.trim();
    if (t.matches("[A-Za-z0-9_,\\s-]*")) {
      return of(r, alpha, Arrays.stream(t.split(",")).map(String::trim).filter(x -> !x.isEmpty()).toList());
    }
    try {
      java.util.regex.Pattern.compile(t);
    } catch (java.util.regex.PatternSyntaxException e) {
      throw new IllegalArgumentException("--target-modules '" + targetModules + "' is neither module names nor a valid regex: " + e.getDescription());
    }
    return of(r, alpha, List.of(t)).withTargets(List.of(t), true);
  }

  public LoraConfig withDropout(double p) {
    return copy(c -> c.loraDropout = p);
  }

  public LoraConfig withBias(String b) {
    return copy(c -> c.bias = b);
  }

  public LoraConfig withRslora(boolean on) {
    return copy(c -> c.useRslora = on);
  }

  public LoraConfig withPatterns(Map<String, Integer> ranks, Map<String, Double> alphas) {
    return copy(c -> {
      c.rankPattern = ranks;
      c.alphaPattern = alphas;
    });
  }

  public LoraConfig withLayers(List<Integer> layers) {
    return copy(c -> c.layersToTransform = layers);
  }

  /** {@code true} (Kaiming-uniform A), {@code gaussian} or {@code false}, as PEFT spells them. */
  public LoraConfig withInit(String peftValue) {
    String mode = switch (peftValue) {
      case "true", "kaiming" -> "kaiming";
      case "gaussian" -> "gaussian";
      case "false" -> "false";
      default -> throw new IllegalArgumentException("init_lora_weights must be true, gaussian or false but found '" + peftValue + "'"
          + (List.of("pissa", "olora", "loftq", "eva", "corda").stream().anyMatch(peftValue.toLowerCase(java.util.Locale.ROOT)::startsWith)
              ? "; PEFT's " + peftValue + " initialization is not supported" : ""));
    };
    return copy(c -> c.initLoraWeights = mode);
  }

  /** Target modules as PEFT takes them: names (exact or ".name" suffix), "all-linear", or one regex over the full module path. */
  public LoraConfig withTargets(List<String> targets, boolean regex) {
    return copy(c -> {
      c.targetModules = targets;
      c.targetRegex = regex;
    });
  }

  public LoraConfig withDora(boolean on) {
    return copy(c -> c.useDora = on);
  }

  /** This config as VeRA ({@link Vera#OFF}: LoRA); r becomes the shared projections' rank. */
  public LoraConfig withVera(Vera v) {
    return copy(c -> c.vera = v);
  }

  /** "LORA", "VERA" or "ADALORA", as PEFT's peft_type. */
  public String peftType() {
    return vera.on() ? "VERA" : adalora.on() ? "ADALORA" : "LORA";
  }

  /** This config as AdaLoRA ({@link Adalora#OFF}: LoRA). */
  public LoraConfig withAdalora(Adalora a) {
    return copy(c -> c.adalora = a);
  }

  public LoraConfig withBaseModel(String path) {
    return copy(c -> c.baseModelNameOrPath = path);
  }

  /** The fields of a LoraConfig, to change a few of them by name and build a validated copy. */
  private static final class Copy {
    int r;
    double loraAlpha;
    double loraDropout;
    List<String> targetModules;
    boolean targetRegex;
    List<Integer> layersToTransform;
    Map<String, Integer> rankPattern;
    Map<String, Double> alphaPattern;
    String bias;
    boolean useRslora;
    String initLoraWeights;
    String baseModelNameOrPath;
    boolean useDora;
    Vera vera;
    Adalora adalora;

    Copy(LoraConfig c) {
      r = c.r;
      loraAlpha = c.loraAlpha;
      loraDropout = c.loraDropout;
      targetModules = c.targetModules;
      targetRegex = c.targetRegex;
      layersToTransform = c.layersToTransform;
      rankPattern = c.rankPattern;
      alphaPattern = c.alphaPattern;
      bias = c.bias;
      useRslora = c.useRslora;
      initLoraWeights = c.initLoraWeights;
      baseModelNameOrPath = c.baseModelNameOrPath;
      useDora = c.useDora;
      vera = c.vera;
      adalora = c.adalora;
    }
  }

  /** This config with what {@code change} sets, validated as any LoraConfig: the one way its withX copies are made. */
  private LoraConfig copy(java.util.function.Consumer<Copy> change) {
    Copy c = new Copy(this);
    change.accept(c);
    return new LoraConfig(c.r, c.loraAlpha, c.loraDropout, c.targetModules, c.targetRegex, c.layersToTransform, c.rankPattern, c.alphaPattern, c.bias, c.useRslora, c.initLoraWeights, c.baseModelNameOrPath, c.useDora, c.vera, c.adalora);
  }

  /** PEFT's pattern lookup: the first key whose "(.*\.)?key$" matches the module path. */
  static <V> Optional<V> patternValue(Map<String, V> patterns, String module) {
    return patterns.entrySet().stream()
        .filter(e -> module.matches("(.*\\.)?" + e.getKey() + "$"))
        .sorted(Map.Entry.comparingByKey())
        .map(Map.Entry::getValue)
        .findFirst();
  }

  public int rankFor(String module) {
    if (adalora.on()) {
      return adalora.rankOf(module);
    }
    return patternValue(rankPattern, module).orElse(r);
  }

  public double alphaFor(String module) {
    return patternValue(alphaPattern, module).orElse(loraAlpha);
  }

  /** The LoRA scaling s in ΔW = s·B·A. */
  public double scaleFor(String module) {
    if (vera.on()) {
      return 1.0; // VeRA scales through λ_b and λ_d
    }
    if (adalora.on()) { // PEFT's SVDLinear: scaling (lora_alpha itself) over ranknum, which stays init_r after truncation
      return loraAlpha / (adalora.initR() + 1e-5);
    }
    int rank = rankFor(module);
    double alpha = alphaFor(module);
    return useRslora ? alpha / Math.sqrt(rank) : alpha / rank;
  }
}
