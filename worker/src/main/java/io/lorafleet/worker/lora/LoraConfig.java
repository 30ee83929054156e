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
 *     module path; empty for none, which trains a sequence classifier's modules_to_save alone (its
 *     head: a linear probe)
 * @param layersToTransform empty for all layers
 * @param rankPattern regex (matched as PEFT: "(.*\.)?key$") → rank
 * @param alphaPattern regex → alpha
 * @param bias "none", "lora_only" or "all"
 * @param initLoraWeights "kaiming" (PEFT's {@code true}: A ~ U(±1/√in), B = 0), "gaussian" (A ~ N(0, (1/r)²), B = 0) or
 *     "false" (PEFT's {@code false}: no LoRA init, so A and B keep nn.Linear's, U(±1/√in) and U(±1/√r); the adapter
 *     changes the model from the start, for tests)
 * @param method the PEFT method over these targets: LoRA, DoRA, VeRA, AdaLoRA or a registered one
 *     ({@link PeftMethod}), with its own settings
 * @param modulesToSave PEFT's modules_to_save: an encoder's modules trained whole (each matched as a
 *     module name or a ".name" suffix, as PEFT does); empty for the architecture's own, its
 *     classification head (PEFT's SEQ_CLS default)
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
    PeftMethod method,
    List<String> modulesToSave) implements java.io.Serializable {

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
    targetModules = List.copyOf(targetModules);
    layersToTransform = List.copyOf(layersToTransform);
    rankPattern = Map.copyOf(rankPattern);
    alphaPattern = Map.copyOf(alphaPattern);
    modulesToSave = List.copyOf(modulesToSave);
  }

  public static LoraConfig of(int r, double alpha, List<String> targets) {
    return new LoraConfig(r, alpha, 0.0, targets, false, List.of(), Map.of(), Map.of(), "none", false, "kaiming", "", LoraMethod.INSTANCE, List.of());
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

  /** This config with {@code m} as its method (r is then what m makes of it: VeRA's shared rank, AdaLoRA's ignores it). */
  public LoraConfig withMethod(PeftMethod m) {
    return copy(c -> c.method = m);
  }

  /** This config at rank {@code rank}. */
  public LoraConfig withR(int rank) {
    return copy(c -> c.r = rank);
  }

  /** PEFT's peft_type: the method's. */
  public String peftType() {
    return method.peftType();
  }

  /** PEFT's modules_to_save (empty: the classification head, SEQ_CLS's default). */
  public LoraConfig withModulesToSave(List<String> modules) {
    return copy(c -> c.modulesToSave = modules);
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
    PeftMethod method;
    List<String> modulesToSave;

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
      method = c.method;
      modulesToSave = c.modulesToSave;
    }
  }

  /** This config with what {@code change} sets, validated as any LoraConfig: the one way its withX copies are made. */
  private LoraConfig copy(java.util.function.Consumer<Copy> change) {
    Copy c = new Copy(this);
    change.accept(c);
    LoraConfig copy = new LoraConfig(c.r, c.loraAlpha, c.loraDropout, c.targetModules, c.targetRegex, c.layersToTransform, c.rankPattern,
        c.alphaPattern, c.bias, c.useRslora, c.initLoraWeights, c.baseModelNameOrPath, c.method, c.modulesToSave);
    copy.method.validate(copy); // the method refuses the options it does not take
    return copy;
  }

  /** PEFT's pattern lookup: the first key whose "(.*\.)?key$" matches the module path. */
  static <V> Optional<V> patternValue(Map<String, V> patterns, String module) {
    return patterns.entrySet().stream()
        .filter(e -> module.matches("(.*\\.)?" + e.getKey() + "$"))
        .sorted(Map.Entry.comparingByKey())
        .map(Map.Entry::getValue)
        .findFirst();
  }

  /** The rank of {@code module}, as its method reads it (rank_pattern, or AdaLoRA's allocation). */
  public int rankFor(String module) {
    return method.rank(this, module);
  }

  public double alphaFor(String module) {
    return patternValue(alphaPattern, module).orElse(loraAlpha);
  }

  /** The LoRA scaling s in ΔW = s·B·A, as its method defines it. */
  public double scaleFor(String module) {
    return method.scale(this, module);
  }
}
