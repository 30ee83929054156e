package io.lorafleet.worker.safetensors;

import java.util.Arrays;
import java.util.stream.Collectors;

/** The safetensors dtypes lorafleet reads. Names and byte sizes follow the safetensors spec. */
public enum DType {
  F64(8), F32(4), F16(2), BF16(2), I64(8), I32(4), I16(2), I8(1), U8(1), BOOL(1);

  private final int bytes;

  DType(int bytes) {
    this.bytes = bytes;
  }

  public int bytes() {
    return bytes;
  }

  public boolean isFloat() {
    return this == F64 || this == F32 || this == F16 || this == BF16;
  }

  /** torch's name of a float dtype ("float16"), as config.json's torch_dtype and bitsandbytes' quant_state record it. */
  public String torchName() {
    return switch (this) {
      case F64 -> "float64";
      case F32 -> "float32";
      case F16 -> "float16";
      case BF16 -> "bfloat16";
      default -> throw new IllegalArgumentException("not a float dtype: " + this);
    };
  }

  /** Parses a header dtype string, naming the file and tensor when it is unknown. */
  public static DType parse(String s, String where) {
    for (DType d : values()) {
      if (d.name().equals(s)) {
        return d;
      }
    }
    throw new SafetensorsException(
        where + ": unsupported dtype '" + s + "', expected one of "
            + Arrays.stream(values()).map(Enum::name).collect(Collectors.joining(", ")));
  }
}
