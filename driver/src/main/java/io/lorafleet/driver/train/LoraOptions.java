package io.lorafleet.driver.train;

import io.lorafleet.driver.optim.AdamW;
import io.lorafleet.worker.lora.FlatLayout;
import io.lorafleet.worker.lora.LoraConfig;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The PEFT LoraConfig options a run sets beyond r, alpha, dropout and target modules, with PEFT's
 * meanings (peft/tuners/lora/config.py), and LoRA+'s learning-rate ratio (PEFT's
 * create_loraplus_optimizer, Hayou et al. 2024).
 *
 * @param initLoraWeights "true", "gaussian" or "false", as PEFT spells them
 * @param loraplusLrRatio 0 for plain LoRA; else lora_B and every 1-D trainable tensor (biases, DoRA
 *     magnitudes) train at this times the learning rate, and biases without weight decay
 * @param useDora DoRA (PEFT's use_dora)
 * @param vera VeRA's settings ({@link LoraConfig.Vera#OFF} for LoRA)
 * @param adalora AdaLoRA's settings ({@link LoraConfig.Adalora#OFF} for LoRA)
 */
public record LoraOptions(boolean useRslora, String bias, Map<String, Integer> rankPattern, Map<String, Double> alphaPattern,
    List<Integer> layersToTransform, String initLoraWeights, double loraplusLrRatio, boolean useDora, LoraConfig.Vera vera,
    LoraConfig.Adalora adalora) implements Serializable {
  public static final LoraOptions DEFAULT = new LoraOptions(false, "none", Map.of(), Map.of(), List.of(), "true", 0, false, LoraConfig.Vera.OFF,
      LoraConfig.Adalora.OFF);

  /** As the canonical constructor, for LoRA (no VeRA). */
  public LoraOptions(boolean useRslora, String bias, Map<String, Integer> rankPattern, Map<String, Double> alphaPattern,
      List<Integer> layersToTransform, String initLoraWeights, double loraplusLrRatio, boolean useDora) {
    this(useRslora, bias, rankPattern, alphaPattern, layersToTransform, initLoraWeights, loraplusLrRatio, useDora, LoraConfig.Vera.OFF,
        LoraConfig.Adalora.OFF);
  }

  /** With VeRA's settings. */
  public LoraOptions(boolean useRslora, String bias, Map<String, Integer> rankPattern, Map<String, Double> alphaPattern,
      List<Integer> layersToTransform, String initLoraWeights, double loraplusLrRatio, boolean useDora, LoraConfig.Vera vera) {
    this(useRslora, bias, rankPattern, alphaPattern, layersToTransform, initLoraWeights, loraplusLrRatio, useDora, vera, LoraConfig.Adalora.OFF);
  }

  public LoraOptions {
    if (loraplusLrRatio < 0 || Double.isNaN(loraplusLrRatio)) {
      throw new IllegalArgumentException("--loraplus-lr-ratio must be >= 0 (0: plain LoRA) but found " + loraplusLrRatio);
    }
    for (int layer : layersToTransform) {
      if (layer < 0) {
        throw new IllegalArgumentException("--layers-to-transform takes layer indices >= 0 but found " + layer);
      }
    }
    rankPattern = new TreeMap<>(rankPattern);
    alphaPattern = new TreeMap<>(alphaPattern);
    layersToTransform = new ArrayList<>(layersToTransform);
  }

  /** {@code c} with these options, validated by LoraConfig. */
  LoraConfig apply(LoraConfig c) {
    return c.withRslora(useRslora).withBias(bias).withPatterns(rankPattern, alphaPattern).withLayers(layersToTransform).withInit(initLoraWeights).withDora(useDora).withVera(vera).withAdalora(adalora);
  }

  /**
   * The optimizer's parameter groups over the flat layout: with LoRA+, lora_B and 1-D tensors at
   * ratio × lr, biases among them without weight decay (DoRA magnitudes keep it); everything else at lr.
   */
  List<AdamW.Group> groups(FlatLayout layout) {
    List<AdamW.Group> out = new ArrayList<>();
    for (FlatLayout.Slot s : layout.slots()) {
      if (s.frozen()) {
        out.add(AdamW.Group.frozen(s.offset(), s.offset() + s.size()));
        continue;
      }
      boolean oneD = s.shape().length == 1;
      boolean fast = loraplusLrRatio > 0 && (s.key().contains("lora_B") || oneD);
      boolean bias = s.key().endsWith(".bias"); // PEFT's groupB_no_decay: 1-D tensors named bias
      AdamW.Group g = new AdamW.Group(s.offset(), s.offset() + s.size(), fast ? loraplusLrRatio : 1.0, !(fast && bias));
      AdamW.Group last = out.isEmpty() ? null : out.get(out.size() - 1);
      if (last != null && last.to() == g.from() && last.lrScale() == g.lrScale() && last.decay() == g.decay()) {
        out.set(out.size() - 1, new AdamW.Group(last.from(), g.to(), g.lrScale(), g.decay())); // one run of like values
      } else {
        out.add(g);
      }
    }
    return out;
  }
}
