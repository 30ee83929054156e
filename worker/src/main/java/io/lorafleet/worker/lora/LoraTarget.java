package io.lorafleet.worker.lora;

import io.lorafleet.worker.model.LinearSpec;

/** A projection LoRA adapts: A is rank×in, B is out×rank, ΔW = scale·B·A (out×in). */
public record LoraTarget(LinearSpec module, int rank, double scale) {
  public String keyA() {
    return AdapterFormat.PREFIX + module.name() + ".lora_A.weight";
  }

  /** DoRA's magnitude m (out), saved by PEFT without the ".weight" of its module. */
  public String keyM() {
    return AdapterFormat.PREFIX + module.name() + ".lora_magnitude_vector";
  }

  /** AdaLoRA's factors, which PEFT keeps as bare parameters: keys without ".weight". */
  public String keyAdaA() {
    return AdapterFormat.PREFIX + module.name() + ".lora_A";
  }

  public String keyAdaE() {
    return AdapterFormat.PREFIX + module.name() + ".lora_E";
  }

  public String keyAdaB() {
    return AdapterFormat.PREFIX + module.name() + ".lora_B";
  }

  /** VeRA's per-layer λ_b (out). */
  public String keyLambdaB() {
    return AdapterFormat.PREFIX + module.name() + ".vera_lambda_b";
  }

  /** VeRA's per-layer λ_d (r). */
  public String keyLambdaD() {
    return AdapterFormat.PREFIX + module.name() + ".vera_lambda_d";
  }

  public String keyB() {
    return AdapterFormat.PREFIX + module.name() + ".lora_B.weight";
  }
}
