package io.lorafleet.worker.model;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.lorafleet.worker.quant.Nf4Tensor;
import io.lorafleet.worker.quant.Quantization;
import io.lorafleet.worker.quant.QuantizedLinear;
import io.lorafleet.worker.safetensors.Tensor;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.stream.Collectors;

/**
 * A language model, causal (Llama family, GPT-2, GPT-J) or an encoder classifier (RoBERTa,
 * DeBERTa-v2): the base tensors in one NDManager, in compute dtype and layout (see
 * {@link ParamSpec}), full precision or quantized, and its architecture's forward pass (its
 * {@link Backbone}). Loaded once per executor JVM ({@link HfDirectory} reads the directory) and
 * shared by every step; steps pass a {@link ForwardContext} with their own scope.
 */
public final class LanguageModel implements BaseModel, AutoCloseable {
  private final ModelConfig config;
  private final Backbone backbone;
  private final List<ParamSpec> params;
  private final Map<String, ParamSpec> paramByName;
  private final Map<String, LinearSpec> linears;
  private final NDManager manager;
  private final DataType dtype;
  private final Map<String, NDArray> weights;
  private final Map<String, QuantizedLinear> quantized;
  private final String quantization;
  private final Map<String, NDArray> transposed = new java.util.concurrent.ConcurrentHashMap<>();
  private final List<String> headTensors;
  private final List<String> optionalTensors;

  /** Where a base's tensors come from: a quantized form for a projection weight, or HF-layout floats. */
  interface Source {
    Optional<QuantizedLinear> quantized(LinearSpec projection, ParamSpec weight);

    float[] dense(ParamSpec p);

    /** Whether the source holds p (an encoder's head may be missing: a base model). */
    boolean has(ParamSpec p);

    /** {@code quantize} applied to a full-precision projection weight as it is loaded, into {@code m}; empty for none. */
    default Optional<QuantizedLinear> atLoad(LinearSpec l, ParamSpec p, Quantization quantize, NDManager m) {
      return quantize.on()
          ? Optional.of(Nf4Tensor.quantize(outIn(p, l, dense(p)), new long[] {l.out(), l.in()}, quantize.doubleQuant(), "float32").upload(m))
          : Optional.empty();
    }
  }

  LanguageModel(ModelConfig config, NDManager manager, DataType dtype, String quantization, Source source) {
    this.config = config;
    this.backbone = Backbone.of(config);
    this.params = List.copyOf(backbone.params(config));
    this.paramByName = params.stream().collect(Collectors.toMap(ParamSpec::name, p -> p, (a, b) -> a, LinkedHashMap::new));
    this.headTensors = backbone.headParams(config).stream().map(ParamSpec::name).toList();
    this.optionalTensors = backbone.initializedWhenMissing(config);
    this.linears = backbone.linears(config).stream().collect(Collectors.toMap(LinearSpec::name, l -> l, (a, b) -> a, LinkedHashMap::new));
    this.manager = manager;
    this.dtype = dtype;
    this.quantization = quantization;
    this.weights = new LinkedHashMap<>();
    this.quantized = new LinkedHashMap<>();
    Map<String, LinearSpec> quantizable = new HashMap<>();
    for (LinearSpec l : linears.values()) {
      if (l.quantizable()) {
        quantizable.put(l.weightKey(), l);
      }
    }
    for (ParamSpec p : params) {
      Optional<QuantizedLinear> q = quantizable.containsKey(p.name()) ? source.quantized(quantizable.get(p.name()), p) : Optional.empty();
      if (q.isPresent()) {
        quantized.put(p.name(), q.get());
        continue;
      }
      // a head (or BERT's pooler) the checkpoint lacks is made as transformers' _init_weights makes it
      float[] hf = optionalTensors.contains(p.name()) && !source.has(p) ? HeadInit.tensor(config, p).toFloatArray() : source.dense(p);
      float[] data = p.transposed() ? transpose(hf, (int) p.hfShape()[0], (int) p.hfShape()[1]) : hf;
      weights.put(p.name(), manager.create(data, new Shape(p.computeShape())).toType(dtype, false));
    }
  }

  /** A projection weight as torch's [out, in]: nn.Linear's HF layout, or GPT-2's Conv1D [in, out] transposed, as transformers quantizes it. */
  private static float[] outIn(ParamSpec p, LinearSpec l, float[] hf) {
    return p.transposed() ? hf : transpose(hf, l.in(), l.out());
  }

  /** Builds a model from host tensors keyed by HF name (used by init-model and tests). */
  public static LanguageModel fromTensors(ModelConfig config, Map<String, Tensor> tensors, Device device, DataType dtype) {
    return fromTensors(config, tensors, device, dtype, Quantization.NONE);
  }

  /** As {@link #fromTensors(ModelConfig, Map, Device, DataType)}, quantizing the projections as {@link #load} does. */
  public static LanguageModel fromTensors(ModelConfig config, Map<String, Tensor> tensors, Device device, DataType dtype, Quantization quantize) {
    NDManager m = Djl.newManager(device, "causal-lm");
    try {
      return new LanguageModel(config, m, dtype, quantize.tag(), new Source() {
        @Override
        public Optional<QuantizedLinear> quantized(LinearSpec l, ParamSpec p) {
          return atLoad(l, p, quantize, m);
        }

        @Override
        public float[] dense(ParamSpec p) {
          return checked(p, Optional.ofNullable(tensors.get(p.name())), "the given tensors");
        }

        @Override
        public boolean has(ParamSpec p) {
          return tensors.containsKey(p.name());
        }
      });
    } catch (RuntimeException e) {
      m.close();
      throw e;
    }
  }

  /** Loads an HF model directory: config.json plus model.safetensors or a sharded index. */
  public static LanguageModel load(Path dir, Device device, DataType dtype) {
    return load(dir, device, dtype, Quantization.NONE);
  }

  /**
   * Loads an HF model directory, quantizing its projections (not embeddings, norms or lm_head) as
   * {@code quantize} says; how the directory is read is {@link HfDirectory}'s.
   */
  public static LanguageModel load(Path dir, Device device, DataType dtype, Quantization quantize) {
    return load(dir, device, dtype, quantize, Labels.FROM_CONFIG);
  }

  /** As {@link #load(Path, Device, DataType, Quantization)}, a classifier with {@code labels} instead of config.json's (see {@link Labels}). */
  public static LanguageModel load(Path dir, Device device, DataType dtype, Quantization quantize, Labels labels) {
    return HfDirectory.load(dir, device, dtype, quantize, labels);
  }

  static float[] checked(ParamSpec p, Optional<Tensor> t, String where) {
    Tensor tensor = t.orElseThrow(() -> new IllegalArgumentException(where + ": missing tensor '" + p.name() + "'"));
    if (!Arrays.equals(tensor.shape(), p.hfShape())) {
      throw new IllegalArgumentException(where + ": tensor '" + p.name() + "' has shape " + Arrays.toString(tensor.shape())
          + " but config.json implies " + Arrays.toString(p.hfShape()));
    }
    if (!tensor.dtype().isFloat()) {
      throw new IllegalArgumentException(where + ": tensor '" + p.name() + "' has dtype " + tensor.dtype() + ", expected F32, F16 or BF16");
    }
    return tensor.toFloatArray();
  }

  /** A row-major [rows, cols] matrix transposed to [cols, rows]. */
  public static float[] transpose(float[] a, int rows, int cols) {
    float[] t = new float[a.length];
    for (int r = 0; r < rows; r++) {
      for (int c = 0; c < cols; c++) {
        t[c * rows + r] = a[r * cols + c];
      }
    }
    return t;
  }

  @Override
  public ModelConfig config() {
    return config;
  }

  public DataType dtype() {
    return dtype;
  }

  public NDManager manager() {
    return manager;
  }

  @Override
  public List<ParamSpec> params() {
    return params;
  }

  @Override
  public Optional<ParamSpec> paramSpec(String name) {
    return Optional.ofNullable(paramByName.get(name));
  }

  @Override
  public List<LinearSpec> linears() {
    return List.copyOf(linears.values());
  }

  public LinearSpec linearSpec(String name) {
    LinearSpec l = linears.get(name);
    if (l == null) {
      throw new IllegalArgumentException("no projection named '" + name + "' in this " + config.modelType() + " model");
    }
    return l;
  }

  /** The frozen base tensor in compute layout. Callers must not use it as a first operand in a step. */
  public NDArray weight(String name) {
    NDArray w = weights.get(name);
    if (w == null && quantized.containsKey(name)) {
      throw new IllegalStateException("'" + name + "' is stored " + quantization + "; it has no full-precision tensor (dequantize() the model "
          + "first, as merge does)");
    }
    if (w == null) {
      throw new IllegalArgumentException("no tensor named '" + name + "' in this " + config.modelType() + " model");
    }
    return w;
  }

  /** How the projections are held: none, nf4, nf4-dq or gptq-int4. */
  public String quantization() {
    return quantization;
  }

  public boolean isQuantized() {
    return !quantized.isEmpty();
  }

  /** Device bytes of the base: the quantized projections' stored forms, and every other tensor in the compute dtype. */
  public Bytes bytes() {
    long q = 0;
    long qParams = 0;
    for (Map.Entry<String, QuantizedLinear> e : quantized.entrySet()) {
      q += e.getValue().bytes();
      qParams += paramByName.get(e.getKey()).numel();
    }
    long dense = 0;
    long denseParams = 0;
    for (NDArray w : weights.values()) {
      dense += w.size() * w.getDataType().getNumOfBytes();
      denseParams += w.size();
    }
    return new Bytes(qParams, q, denseParams, dense);
  }

  /** A base's device bytes, split into quantized projections and the rest. */
  public record Bytes(long quantizedParams, long quantizedBytes, long denseParams, long denseBytes) {
    public long params() {
      return quantizedParams + denseParams;
    }

    public long total() {
      return quantizedBytes + denseBytes;
    }
  }

  /**
   * Replaces every quantized projection with its dequantized weight in the compute dtype, in place:
   * what a merge needs (W + s·B·A) and what exporting a quantized base as full precision writes.
   */
  public void dequantize() {
    try (NDManager scope = manager.newSubManager()) {
      for (Map.Entry<String, QuantizedLinear> e : quantized.entrySet()) {
        ParamSpec p = paramByName.get(e.getKey());
        long[] cs = p.computeShape(); // (in, out)
        float[] outIn = e.getValue().dequantize(scope, DataType.FLOAT32).toFloatArray();
        weights.put(p.name(), manager.create(transpose(outIn, (int) cs[1], (int) cs[0]), new Shape(cs)).toType(dtype, false));
      }
    }
    quantized.clear();
  }

  /** A base tensor back in HF layout, as fp32 host data (for export); a quantized projection is dequantized. */
  @Override
  public Tensor hfTensor(String name) {
    ParamSpec p = paramByName.get(name);
    QuantizedLinear q = quantized.get(name);
    if (q != null) {
      try (NDManager scope = manager.newSubManager()) {
        float[] outIn = q.dequantize(scope, DataType.FLOAT32).toFloatArray();
        long[] hf = p.hfShape();
        return Tensor.ofFloats(p.transposed() ? outIn : transpose(outIn, (int) hf[1], (int) hf[0]), hf);
      }
    }
    float[] data = weight(name).toType(DataType.FLOAT32, false).toFloatArray();
    if (p.transposed()) {
      data = transpose(data, (int) p.hfShape()[1], (int) p.hfShape()[0]);
    }
    return Tensor.ofFloats(data, p.hfShape());
  }

  /** The last hidden state (B, T, H) for a batch's inputs: an encoder's output before its pooler and classifier, which sentence-embedding models pool. */
  public NDArray lastHiddenState(ForwardContext ctx, Batch batch) {
    NDArray ids = ctx.manager().create(batch.inputIds()).toType(DataType.INT64, false);
    return backbone.lastHiddenState(this, ctx, ids, batch);
  }

  /** Logits (B, T, V) for a batch's inputs. */
  public NDArray forward(ForwardContext ctx, Batch batch) {
    NDArray ids = ctx.manager().create(batch.inputIds()).toType(DataType.INT64, false);
    return backbone.forward(this, ctx, ids, batch);
  }

  /** Logits for new tokens (B, T) continuing the positions already in the cache. */
  public NDArray forward(ForwardContext ctx, int[][] ids, KvCache cache) {
    int[][] pos = new int[ids.length][ids[0].length];
    for (int[] row : pos) {
      for (int i = 0; i < row.length; i++) {
        row[i] = cache.length() + i;
      }
    }
    NDArray idArr = ctx.manager().create(ids).toType(DataType.INT64, false);
    return backbone.forward(this, ctx, idArr, pos, Optional.empty(), Optional.of(cache));
  }

  /**
   * Logits (B, 1, V) of the last of the new tokens (B, T) of rows that continue at their own
   * positions: {@code positions} (B, T) for the new tokens, and {@code segments} (B, cached + T) for
   * every key so far, so that a query sees only keys of its own segment (left padding gets a segment
   * of its own). Only the last position goes through the head: a prefill of B rows of T tokens never
   * holds (B, T, V) logits, which for a long prompt and a large vocabulary would outweigh the KV
   * cache itself.
   */
  public NDArray forwardLast(ForwardContext ctx, int[][] ids, int[][] positions, int[][] segments, KvCache cache) {
    if (config.arch().encoder()) {
      EncoderBlocks.refuseCache(config, Optional.of(cache));
    }
    if (segments[0].length != cache.length() + ids[0].length) {
      throw new IllegalArgumentException("segments cover " + segments[0].length + " keys but the cache holds " + cache.length()
          + " and " + ids[0].length + " are new");
    }
    NDArray idArr = ctx.manager().create(ids).toType(DataType.INT64, false);
    NDArray h = backbone.hidden(this, ctx, idArr, positions, Optional.of(segments), Optional.of(cache)); // (B, T, H)
    return backbone.head(this, ctx, h.get(new NDIndex(":, -1:, :"))); // (B, 1, V)
  }

  @Override
  public List<String> optionalTensors() {
    return optionalTensors;
  }

  @Override
  public List<String> headTensors() {
    return headTensors;
  }

  /** The architecture's forward pass, in pieces (for {@link Segments}). */
  Backbone backbone() {
    return backbone;
  }

  /** This batch's forward pass in recomputable pieces, for training with bounded activation memory. */
  public Segments segments(ForwardContext ctx, Batch batch) {
    return new Segments(this, ctx, batch);
  }

  public KvCache newCache(NDManager parent) {
    return new KvCache(parent, config.layers());
  }

  NDArray param(ForwardContext ctx, String name) {
    return ctx.override(name).orElseGet(() -> weight(name));
  }

  /** y = x·W (+ b) (+ delta(x)) for the named projection; x (..., in) → (..., out). */
  NDArray linear(ForwardContext ctx, NDArray x, String module) {
    LinearSpec spec = linearSpec(module);
    QuantizedLinear q = quantized.get(spec.weightKey());
    if (q != null && ctx.override(spec.weightKey()).isEmpty()) {
      return ctx.delta().addTo(spec, x, quantizedLinear(ctx, x, spec, q));
    }
    NDArray w = param(ctx, spec.weightKey()); // (in, out)
    NDArray y = spec.hasBias() ? addmm(param(ctx, spec.name() + ".bias"), x, w.transpose()) : x.matMul(w);
    return ctx.delta().addTo(spec, x, y);
  }

  /**
   * x·Wᵀ (+ b) over a quantized weight: W (out, in) is dequantized in the compute dtype in a scope of
   * its own, used, and freed, so that one projection's full-precision weight exists at a time (the
   * graph keeps it for the input gradient while it is needed; the base gets no gradient).
   */
  private NDArray quantizedLinear(ForwardContext ctx, NDArray x, LinearSpec spec, QuantizedLinear q) {
    try (NDManager scope = x.getManager().newSubManager()) {
      NDArray w = q.dequantize(scope, dtype); // (out, in)
      if (spec.hasBias()) {
        return addmm(param(ctx, spec.name() + ".bias"), x, w);
      }
      return x.matMul(w.transpose());
    }
  }

  /**
   * c + x·wᵀ in one fused product (torch.addmm through torch.nn.functional.linear), so the sum is
   * written once instead of by a matmul and a separate add. x (..., k), w (n, k), c broadcastable
   * to (..., n), or exactly (..., n).
   */
  public static NDArray addmm(NDArray c, NDArray x, NDArray w) {
    Shape xs = x.getShape();
    long k = xs.get(xs.dimension() - 1);
    long n = w.getShape().get(0);
    NDArray x2 = x.reshape(-1, k);
    NDArray c2 = c.getShape().dimension() == 1 ? c : c.reshape(-1, n);
    NDArray y = ai.djl.pytorch.jni.JniUtils.linear((ai.djl.pytorch.engine.PtNDArray) x2, (ai.djl.pytorch.engine.PtNDArray) w,
        (ai.djl.pytorch.engine.PtNDArray) c2);
    long[] out = xs.getShape().clone(); // getShape() hands out the Shape's own array
    out[out.length - 1] = n;
    return y.reshape(new Shape(out));
  }

  /**
   * Rows of an embedding table for int64 ids (B, T) → (B, T, H), through torch.embedding: its CPU
   * backward accumulates repeated ids in a fixed order, where advanced indexing's does not, so full
   * fine-tuning is bitwise reproducible.
   */
  NDArray embed(ForwardContext ctx, String table, NDArray ids) {
    return ctx.local(ids.getNDArrayInternal().embedding(ids, param(ctx, table), ai.djl.ndarray.types.SparseFormat.DENSE).singletonOrThrow());
  }

  /** Logits through the input embedding: h (B, T, H) · E^T. */
  NDArray tiedHead(ForwardContext ctx, NDArray h, String table) {
    Optional<NDArray> o = ctx.override(table);
    NDArray et = o.isPresent() ? o.get().transpose() : transposed.computeIfAbsent(table, k -> weight(k).transpose());
    return h.matMul(et);
  }

  @Override
  public void close() {
    manager.close();
  }
}
