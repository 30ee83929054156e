package io.lorafleet.driver.train;

import ai.djl.Device;
import io.lorafleet.datasets.arrow.Example;
import io.lorafleet.datasets.arrow.TokenLimits;
import io.lorafleet.worker.model.ModelConfig;
import io.lorafleet.worker.model.ModelSkeleton;
import io.lorafleet.datasets.prepare.Prepare;
import io.lorafleet.worker.model.CausalLM;
import io.lorafleet.worker.model.Djl;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.ConcurrentHashMap;

/** Per-executor-JVM caches: the frozen base is loaded once, whatever the number of stages and attempts. */
public final class ModelCache {
  private static final ConcurrentHashMap<String, CausalLM> MODELS = new ConcurrentHashMap<>();
  private static final ConcurrentHashMap<String, List<Example>> DATA = new ConcurrentHashMap<>();
  private static final ConcurrentHashMap<String, ModelSkeleton> SKELETONS = new ConcurrentHashMap<>();

  private ModelCache() {}

  /** The base's structure (config.json and safetensors headers), without weights: what the driver holds. */
  public static ModelSkeleton skeleton(String dir) {
    return SKELETONS.computeIfAbsent(dir, d -> ModelSkeleton.read(Path.of(d)));
  }

  public static CausalLM model(String dir, Device device) {
    return MODELS.computeIfAbsent(dir + "@" + device, k -> CausalLM.load(Path.of(dir), device, Djl.computeDtype(device)));
  }

  /** A split's examples, unchecked (for counting them). */
  public static List<Example> examples(String splitDir) {
    return examples(splitDir, TokenLimits.NONE);
  }

  /** A split's examples, every row checked against what {@code model} accepts. */
  public static List<Example> examples(String splitDir, ModelConfig model) {
    return examples(splitDir, new TokenLimits(model.vocabSize(), model.maxPositions()));
  }

  private static List<Example> examples(String splitDir, TokenLimits limits) {
    return DATA.computeIfAbsent(splitDir + "|" + limits, k -> {
      try {
        return List.copyOf(Prepare.readSplit(Path.of(splitDir), limits));
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    });
  }
}
