package io.lorafleet.driver.cli;

import io.lorafleet.worker.quant.Quantization;
import picocli.CommandLine.Option;

/** --quantize and --double-quant, for every command that loads a base. */
final class QuantizeOptions {
  @Option(names = "--quantize", defaultValue = "none", description = "quantize the base's projections at load: none, or nf4 (bitsandbytes' NF4, "
      + "as QLoRA; embeddings, norms and lm_head stay full precision). A base stored quantized (bitsandbytes 4-bit, GPTQ) is read as stored")
  String method = "none";

  @Option(names = "--double-quant", negatable = true, defaultValue = "true", fallbackValue = "true", description = "with --quantize nf4: "
      + "also quantize the per-block scales (bnb_4bit_use_double_quant, about 4.127 bits a parameter instead of 4.5)")
  boolean doubleQuant = true;

  Quantization quantization() {
    return Quantization.of(method, doubleQuant);
  }
}
