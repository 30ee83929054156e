package io.lorafleet.worker.plan;

import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.BaseModel;
import io.lorafleet.worker.model.ModelConfig;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Predicted peak memory of one worker's LoRA step and of the driver, from the model's config and the
 * job's shapes alone (no weights are read), so a job that cannot fit fails before it starts.
 *
 * <p>Worker terms (bytes; s = 4 in fp32, 2 in fp16):
 * <ul>
 *   <li>runtime: the JVM, libtorch and MKL, measured at {@value #RUNTIME_MB} MB after start;
 *   <li>weights: every tensor at s, plus the JVM heap that held them in fp32 while they were read
 *       (the JVM keeps a heap it has grown);
 *   <li>lora: the flat fp32 adapter, its leaves, gradient, accumulator and push buffer (5 × 4 bytes);
 *   <li>activations: what autograd saves per layer and token (the inputs of the norms, projections
 *       and activations: 6·H + 2·Q + 2·KV + 5·I values) plus the attention probabilities (nh·T fp32
 *       values per token), and at the peak of the backward pass two more of one layer's
 *       probabilities; with checkpointing only each layer's input (H) is kept, one layer is
 *       recomputed, and attention and loss run in 16 MiB pieces;
 *   <li>logits: log-softmax output, its gradient and the logits' (B·T·V fp32 each, and the logits
 *       themselves): 4 × B·T·V × 4 bytes, or one 16 MiB chunk's worth with checkpointing.
 * </ul>
 * The sum is multiplied by {@value #ALLOCATOR} for the allocator's fragmentation (glibc keeps freed
 * blocks in its arenas), a factor fitted to bench-step's measured peaks; the README gives the
 * predictions beside the measurements. Driver: the fp32 adapter, AdamW's two moments, the gradient
 * sum, the encoded broadcast and three checkpoint copies, plus 5 MiB per push (the streaming
 * reduce's ring of 4 chunks of 1 MiB and a wire buffer), over a Spark driver's own
 * {@value #DRIVER_RUNTIME_MB} MB.
 */
public final class MemoryPlan {
  static final long RUNTIME_MB = 620;
  static final long DRIVER_RUNTIME_MB = 450;
  static final double ALLOCATOR = 1.35;
  static final long PIECE = 16L << 20;
  private static final long MB = 1L << 20;

  /** The job's shapes: micro-batch rows and sequence length, workers, compute bytes per value, checkpointing. */
  public record Shapes(int microBatch, int seqLen, int workers, int dtypeBytes, boolean checkpointing) {
    public Shapes {
      if (microBatch <= 0 || seqLen <= 0 || workers <= 0 || (dtypeBytes != 2 && dtypeBytes != 4)) {
        throw new IllegalArgumentException("micro-batch, seq-len and workers must be > 0 and dtype bytes 2 or 4 but found " + microBatch + ", " + seqLen
            + ", " + workers + ", " + dtypeBytes);
      }
    }
  }

  private MemoryPlan() {}

  /** Per-term predictions in MB (worker_*, driver_*), with worker_peak_mb and driver_peak_mb. */
  public static Map<String, Long> predict(BaseModel base, LoraModel lora, Shapes s) {
    return predict(base.config(), base.parameterCount(), lora.layout().size(), s);
  }

  /** As {@link #predict(BaseModel, LoraModel, Shapes)}, from the config and the two parameter counts. */
  public static Map<String, Long> predict(ModelConfig c, long baseParams, long adapterFloats, Shapes s) {
    long b = s.microBatch();
    long t = s.seqLen();
    long h = c.hidden();
    long q = (long) c.heads() * c.headDim();
    long kv = (long) c.kvHeads() * c.headDim();
    long i = c.intermediate();
    long v = c.vocabSize();
    long layers = c.layers();
    long p = adapterFloats;
    long weights = baseParams * s.dtypeBytes();
    long loraBytes = 5L * 4 * p;
    long perTokenLayer = (6 * h + 2 * q + 2 * kv + 5 * i) * s.dtypeBytes();
    long probsPerLayer = b * c.heads() * t * t * 4;
    long activations;
    long logits;
    if (!s.checkpointing()) {
      activations = layers * (b * t * perTokenLayer + probsPerLayer) + 2 * probsPerLayer;
      logits = 4 * b * t * v * 4;
    } else {
      long inputs = (layers + 2) * b * t * h * s.dtypeBytes();
      long oneLayer = b * t * perTokenLayer + b * t * (q + 2 * kv) * 4; // recomputed layer plus q/k/v leaves and their gradients
      activations = inputs + oneLayer + 4 * PIECE;
      logits = 4 * PIECE + b * t * h * 4;
    }
    Map<String, Long> out = new LinkedHashMap<>();
    out.put("worker_runtime_mb", RUNTIME_MB);
    out.put("worker_weights_mb", weights / MB);
    out.put("worker_load_heap_mb", baseParams * 4 / MB);
    out.put("worker_lora_mb", loraBytes / MB);
    out.put("worker_activations_mb", activations / MB);
    out.put("worker_logits_mb", logits / MB);
    out.put("worker_peak_mb", RUNTIME_MB + baseParams * 4 / MB + Math.round((weights + loraBytes + activations + logits) * ALLOCATOR / MB));
    long driver = 4L * p * (1 + 2 + 1 + 1 + 3) + s.workers() * 5L * MB;
    out.put("driver_adapter_state_mb", driver / MB);
    out.put("driver_peak_mb", DRIVER_RUNTIME_MB + driver / MB);
    return out;
  }

}
