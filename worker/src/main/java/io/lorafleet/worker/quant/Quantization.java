package io.lorafleet.worker.quant;

import java.io.Serializable;

/**
 * How to quantize a full-precision base at load ({@code --quantize}): {@code none}, or bitsandbytes'
 * NF4 with or without double quantization (QLoRA uses it with). A base stored quantized is read as
 * stored, whatever this says, except that asking to quantize it again is refused.
 */
public record Quantization(String method, boolean doubleQuant) implements Serializable {
  public static final Quantization NONE = new Quantization("none", false);
  public static final Quantization NF4 = new Quantization("nf4", true);

  public Quantization {
    if (!method.equals("none") && !method.equals("nf4")) {
      throw new IllegalArgumentException("--quantize must be none or nf4 but found '" + method + "'");
    }
    if (method.equals("none") && doubleQuant) {
      doubleQuant = false; // nothing to double-quantize
    }
  }

  public static Quantization of(String method, boolean doubleQuant) {
    return new Quantization(method, doubleQuant);
  }

  public boolean on() {
    return !method.equals("none");
  }

  /** A short tag for caches and reports: none, nf4, nf4-dq. */
  public String tag() {
    return on() && doubleQuant ? method + "-dq" : method;
  }
}
