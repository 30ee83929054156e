package io.lorafleet.worker.safetensors;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * A host tensor: a dtype, a shape and little-endian bytes. The bridge between safetensors files and
 * DJL arrays; floats of every width convert to fp32 via {@link #toFloatArray()}.
 */
public record Tensor(DType dtype, long[] shape, byte[] data) {
  public Tensor {
    shape = shape.clone();
    long n = 1;
    for (long d : shape) {
      if (d < 0) {
        throw new IllegalArgumentException("negative dimension in shape " + Arrays.toString(shape));
      }
      n *= d;
    }
    if (n * dtype.bytes() != data.length) {
      throw new IllegalArgumentException(
          "shape " + Arrays.toString(shape) + " of " + dtype + " needs " + n * dtype.bytes()
              + " bytes but found " + data.length);
    }
  }

  @Override
  public long[] shape() {
    return shape.clone();
  }

  public long numel() {
    return data.length / dtype.bytes();
  }

  public static Tensor ofFloats(float[] values, long... shape) {
    ByteBuffer b = ByteBuffer.allocate(values.length * 4).order(ByteOrder.LITTLE_ENDIAN);
    b.asFloatBuffer().put(values);
    return new Tensor(DType.F32, shape, b.array());
  }

  /** Converts F32, F16, BF16 or F64 data to fp32. */
  public float[] toFloatArray() {
    ByteBuffer b = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
    int n = (int) numel();
    float[] out = new float[n];
    switch (dtype) {
      case F32 -> b.asFloatBuffer().get(out);
      case F64 -> {
        for (int i = 0; i < n; i++) {
          out[i] = (float) b.getDouble(i * 8);
        }
      }
      case F16 -> {
        for (int i = 0; i < n; i++) {
          out[i] = Half.f16ToFloat(b.getShort(i * 2));
        }
      }
      case BF16 -> {
        for (int i = 0; i < n; i++) {
          out[i] = Float.intBitsToFloat((b.getShort(i * 2) & 0xffff) << 16);
        }
      }
      default -> throw new IllegalStateException("tensor of dtype " + dtype + " is not a float tensor");
    }
    return out;
  }
}
