package io.lorafleet.worker.model;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;

/**
 * The one way lorafleet reaches DJL's PyTorch engine: offline (nothing is ever downloaded) and
 * with a clear message when the native library is missing from the classpath.
 */
public final class Djl {
  public static final String ENGINE = "PyTorch";

  /**
   * Overrides the compute dtype for every model a JVM loads for training and evaluation, e.g.
   * {@code spark.executor.extraJavaOptions=-Dlorafleet.dtype=fp32} to train in fp32 on GPUs.
   */
  public static final String DTYPE_PROPERTY = "lorafleet.dtype";

  private Djl() {}

  public static Engine engine() {
    System.setProperty("ai.djl.offline", "true");
    try {
      return Engine.getEngine(ENGINE);
    } catch (RuntimeException | UnsatisfiedLinkError e) {
      throw new IllegalStateException("DJL's PyTorch native library could not be loaded (" + e.getMessage() + "). "
          + "Put ai.djl.pytorch:pytorch-native-cpu:2.7.1:linux-x86_64 on the classpath, or on GPU clusters the CUDA flavour "
          + "that matches pytorch-jni (see the README's 'GPU clusters' section).", e);
    }
  }

  /**
   * The compute dtype for a device: fp32 on the CPU; fp16 on a GPU, since DJL's PyTorch JNI maps no
   * BF16 (BF16 checkpoints are converted on load). Under fp16, norms, attention softmax and the loss
   * run in fp32 ({@link Ops#wide}) and trainable tensors keep fp32 masters ({@link #masterDtype}).
   */
  public static DataType computeDtype(Device device) {
    String requested = System.getProperty(DTYPE_PROPERTY, "auto");
    return switch (requested) {
      case "auto" -> device.isGpu() ? DataType.FLOAT16 : DataType.FLOAT32;
      case "fp32" -> DataType.FLOAT32;
      case "fp16" -> DataType.FLOAT16;
      default -> throw new IllegalArgumentException("-D" + DTYPE_PROPERTY + " is '" + requested + "', expected auto, fp32 or fp16");
    };
  }


  /** The dtype trainable leaves are kept in for a compute dtype: fp32 masters under fp16 compute. */
  public static DataType masterDtype(DataType compute) {
    return compute == DataType.FLOAT16 ? DataType.FLOAT32 : compute;
  }

  public static NDManager newManager(Device device, String name) {
    NDManager m = engine().newBaseManager(device);
    m.setName(name);
    return m;
  }
}
