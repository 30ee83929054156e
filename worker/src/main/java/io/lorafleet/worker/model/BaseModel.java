package io.lorafleet.worker.model;

import io.lorafleet.worker.safetensors.Tensor;
import java.util.List;
import java.util.Optional;

/**
 * What a base model is, apart from its weights: its config, its tensors (names and shapes) and its
 * projections. An adapter's layout, PEFT file format, checkpoints and averaging need only this, so
 * the driver builds them from a {@link ModelSkeleton} (config.json and safetensors headers) and
 * never holds the weights; workers use the loaded {@link LanguageModel}.
 */
public interface BaseModel {
  ModelConfig config();

  List<ParamSpec> params();

  Optional<ParamSpec> paramSpec(String name);

  List<LinearSpec> linears();

  /**
   * HF names of an encoder's classification head (trained whole, saved as PEFT's modules_to_save);
   * empty for a causal LM.
   */
  List<String> headTensors();

  /**
   * HF names of the tensors an adapter may train whole (PEFT's modules_to_save): the head, and BERT's
   * pooler, which a checkpoint may lack (both are then initialized as transformers does).
   */
  List<String> optionalTensors();

  /** One tensor in HF layout; for small tensors (a bias an adapter trains starts from the base's). */
  Tensor hfTensor(String name);

  default long parameterCount() {
    return params().stream().mapToLong(ParamSpec::numel).sum();
  }
}
