package io.lorafleet.worker.plan;

import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.BaseModel;
import io.lorafleet.worker.model.ModelConfig;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Predicted peak memory of one worker's LoRA step and of the driver, from the model's config and the
 * job's shapes alone (no weights are read), so a job that cannot fit fails before it starts.
 *
 * <p>Worker terms (bytes; s = 4 in fp32, 2 in fp16):
 * <ul>
 *   <li>runtime: the JVM, libtorch and MKL, measured at {@value #RUNTIME_MB} MB after start;
 *   <li>weights: every tensor at s, plus the JVM heap that held them in fp32 while they were read
 *       (the JVM keeps a heap it has grown; fitted to bench-step's models, made in its own heap).
 *       Quantized at load, each tensor's host copies are dropped as it is quantized, and the heap
 *       grew to about 6 times the largest fp32 tensor when bench-step loaded a 1.1B base, to which
 *       that factor is fitted. A quantized base's projections take
 *       {@link #quantizedBytesPerParam} instead, and each is dequantized for its matmul: without
 *       checkpointing the graph keeps every dequantized weight until the backward pass (B·s per
 *       projection parameter), with it only one layer's; the lookup itself needs 12 bytes per
 *       parameter of the largest projection (int64 indices and fp32 codes);
 *   <li>lora: the flat fp32 adapter, its leaves, gradient, accumulator and push buffer (5 × 4 bytes);
 *   <li>activations: what autograd saves per layer and token (the inputs of the norms, projections
 *       and activations: 6·H + 2·Q + 2·KV + 5·I values) plus the attention probabilities (nh·T fp32
 *       values per token), and at the peak of the backward pass two more of one layer's
 *       probabilities; with checkpointing only each layer's input (H) is kept, one layer is
 *       recomputed, and attention and loss run in 16 MiB pieces;
 *   <li>logits: log-softmax output, its gradient and the logits' (B·T·V fp32 each, and the logits
 *       themselves): 4 × B·T·V × 4 bytes, or one 16 MiB chunk's worth with checkpointing; an
 *       encoder's are (B, num_labels), and its step is never checkpointed.
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

  /**
   * The job's shapes: micro-batch rows and sequence length, workers, compute bytes per value,
   * checkpointing, and how the base's projections are held (none, nf4, nf4-dq or gptq-int4).
   */
  public record Shapes(int microBatch, int seqLen, int workers, int dtypeBytes, boolean checkpointing, String quantization) {
    public Shapes {
      if (microBatch <= 0 || seqLen <= 0 || workers <= 0 || (dtypeBytes != 2 && dtypeBytes != 4)) {
        throw new IllegalArgumentException("micro-batch, seq-len and workers must be > 0 and dtype bytes 2 or 4 but found " + microBatch + ", " + seqLen
            + ", " + workers + ", " + dtypeBytes);
      }
      quantizedBytesPerParam(quantization); // validates the name
    }

    /** A full-precision base. */
    public Shapes(int microBatch, int seqLen, int workers, int dtypeBytes, boolean checkpointing) {
      this(microBatch, seqLen, workers, dtypeBytes, checkpointing, "none");
    }
  }

  /**
   * Device bytes per parameter of a quantized projection: NF4 is 4 bits plus an fp32 absmax per 64
   * (4.5 bits), with double quantization an 8-bit absmax per 64 and an fp32 one per 256 blocks
   * (4.127 bits); GPTQ INT4 as lorafleet holds it is 4 bits plus an fp32 zero and scale per group
   * of 128 inputs (4.5 bits). 0 for none.
   */
  public static double quantizedBytesPerParam(String quantization) {
    return switch (quantization) {
      case "none" -> 0;
      case "nf4" -> 0.5 + 4.0 / 64;
      case "nf4-dq" -> 0.5 + 1.0 / 64 + 4.0 / (64 * 256);
      case "gptq-int4" -> 0.5 + 8.0 / 128;
      default -> throw new IllegalArgumentException("quantization must be none, nf4, nf4-dq or gptq-int4 but found '" + quantization + "'");
    };
  }

  /** The base's device bytes under {@code s}: quantized projections at their packed size, every other tensor at the compute dtype. */
  public static long baseBytes(BaseModel base, Shapes s) {
    long q = quantizedParams(base, s);
    return Math.round(q * quantizedBytesPerParam(s.quantization())) + (base.parameterCount() - q) * s.dtypeBytes();
  }

  private static long quantizedParams(BaseModel base, Shapes s) {
    return s.quantization().equals("none") ? 0
        : base.linears().stream().filter(io.lorafleet.worker.model.LinearSpec::quantizable).mapToLong(l -> (long) l.in() * l.out()).sum();
  }

  private MemoryPlan() {}

  /** Per-term predictions in MB (worker_*, driver_*), with worker_peak_mb and driver_peak_mb. */
  public static Map<String, Long> predict(BaseModel base, LoraModel lora, Shapes s) {
    return predict(base, List.of(lora), s);
  }

  /**
   * As {@link #predict(BaseModel, LoraModel, Shapes)} for a multi-run job training {@code adapters}
   * on the one base: each worker holds every adapter (and its gradient and the driver's broadcast of
   * it), and a slot's mixed forward and backward carries a micro-batch of every run, so the
   * activations are those of {@code adapters.size()} times the micro-batch; the driver keeps every
   * run's optimizer state.
   */
  public static Map<String, Long> predict(BaseModel base, List<LoraModel> adapters, Shapes s) {
    return predict(base, adapters, s, adapters.size());
  }

  /** As above, with at most {@code perPass} runs' micro-batches in one pass (train --mixed-runs). */
  public static Map<String, Long> predict(BaseModel base, List<LoraModel> adapters, Shapes s, int perPass) {
    int runs = Math.max(1, Math.min(perPass, adapters.size()));
    s = new Shapes(s.microBatch() * runs, s.seqLen(), s.workers(), s.dtypeBytes(), s.checkpointing(), s.quantization());
    long adapterFloats = adapters.stream().mapToLong(a -> a.layout().size()).sum();
    long dequantized = 0;
    long quantized = quantizedParams(base, s);
    if (quantized > 0) {
      long largest = base.linears().stream().filter(io.lorafleet.worker.model.LinearSpec::quantizable).mapToLong(l -> (long) l.in() * l.out()).max()
          .orElse(0);
      long perLayer = quantized / base.config().layers();
      dequantized = (s.checkpointing() ? perLayer : quantized) * s.dtypeBytes() + 12 * largest;
    }
    long loadHeap = 4 * base.parameterCount();
    if (quantized > 0) {
      loadHeap = Math.min(loadHeap, 6 * 4 * base.params().stream().mapToLong(io.lorafleet.worker.model.ParamSpec::numel).max().orElse(0));
    }
    return predict(base.config(), loadHeap, baseBytes(base, s), dequantized, adapterFloats, s);
  }

  private static Map<String, Long> predict(ModelConfig c, long loadHeap, long baseBytes, long dequantized, long adapterFloats, Shapes s) {
    long b = s.microBatch();
    long t = s.seqLen();
    long h = c.hidden();
    long q = (long) c.heads() * c.headDim();
    long kv = (long) c.kvHeads() * c.headDim();
    long i = c.intermediate();
    long v = c.vocabSize();
    long layers = c.layers();
    long p = adapterFloats;
    long weights = baseBytes + dequantized;
    long loraBytes = 5L * 4 * p;
    long perTokenLayer = (6 * h + 2 * q + 2 * kv + 5 * i) * s.dtypeBytes();
    long probsPerLayer = b * c.heads() * t * t * 4;
    long activations;
    long logits;
    if (c.arch().encoder()) { // a classifier's step runs whole (no checkpointing) and its logits are (B, num_labels)
      // DeBERTa: about three more (B, nh, T, T) fp32 tensors per layer for each of c2p and p2c (fitted to
      // bench-step --arch deberta-v2, hidden 768, 12 layers, 8x128: 4334 MB measured against 3864 without this term)
      long disentangled = c.disentangledTerms() * 3 * probsPerLayer;
      activations = layers * (b * t * perTokenLayer + probsPerLayer + disentangled) + 2 * probsPerLayer;
      logits = 4 * b * c.numLabels() * 4;
    } else if (!s.checkpointing()) {
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
    out.put("worker_weights_mb", baseBytes / MB);
    if (dequantized > 0) {
      out.put("worker_dequantized_mb", dequantized / MB);
    }
    out.put("worker_load_heap_mb", loadHeap / MB);
    out.put("worker_lora_mb", loraBytes / MB);
    out.put("worker_activations_mb", activations / MB);
    out.put("worker_logits_mb", logits / MB);
    out.put("worker_peak_mb", RUNTIME_MB + loadHeap / MB + Math.round((weights + loraBytes + activations + logits) * ALLOCATOR / MB));
    long driver = 4L * p * (1 + 2 + 1 + 1 + 3) + s.workers() * 5L * MB;
    out.put("driver_adapter_state_mb", driver / MB);
    out.put("driver_peak_mb", DRIVER_RUNTIME_MB + driver / MB);
    return out;
  }

}
