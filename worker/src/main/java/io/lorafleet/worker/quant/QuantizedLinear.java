package io.lorafleet.worker.quant;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;

/**
 * A frozen projection weight kept quantized on the device. {@link #dequantize} makes W (out, in) in
 * the compute dtype for one matmul; the caller frees it when the product is made (autograd keeps
 * what the backward pass needs), so at most one projection's full-precision weight exists at a time
 * outside the graph.
 */
public interface QuantizedLinear {
  /** W (out, in), torch's nn.Linear layout, in {@code dtype}, owned by {@code scope}. */
  NDArray dequantize(NDManager scope, DataType dtype);

  /** The device bytes this weight holds (codes, scales, tables). */
  long bytes();

  /**
   * A weight of {@code bytes} whose values {@code decode} makes in a scratch scope (fp32, or the
   * precision its format rounds to); the result is cast to the asked dtype in the caller's scope and
   * the scratch arrays are freed.
   */
  static QuantizedLinear of(long bytes, java.util.function.Function<NDManager, NDArray> decode) {
    return new QuantizedLinear() {
      @Override
      public NDArray dequantize(NDManager scope, DataType dtype) {
        try (NDManager tmp = scope.newSubManager()) {
          NDArray w = decode.apply(tmp);
          w = w.getDataType() == dtype ? w : w.toType(dtype, false);
          w.attach(scope); // a view keeps its storage alive when tmp closes the arrays it came from
          return w;
        }
      }

      @Override
      public long bytes() {
        return bytes;
      }
    };
  }
}
