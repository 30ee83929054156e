package io.lorafleet.worker.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import java.util.List;

/**
 * Training-mode dropout whose masks depend on what they mask and nothing else: the element at
 * (row b, i1, …, in) of a module's input is dropped when a counter-based hash of (seed, the row's
 * key, the module, i1, …, in) falls below p. A row's key is its position in the run's data order,
 * so a row gets the same mask whichever worker computes it, in whichever micro-batch, beside
 * whichever rows and under however much padding: N workers train what one worker trains, and a
 * recomputed piece (gradient checkpointing) draws the masks it drew the first time.
 *
 * <p>Kept elements are scaled by 1/(1−p) (inverted dropout, as torch.nn.Dropout). The hash is
 * SplitMix64's finalizer over a running key: each index folds into the key of its line, and the
 * last axis is a counter, so the mask of a row's first T tokens does not change when the batch is
 * padded to more.
 *
 <p>Two kinds of module draw from it: LoRA's dropout on an adapter's input (module keys are the
 * adapter modules' indexes, 0, 1, …) and, when {@code model} is set, the base model's own dropouts
 * as transformers applies them in train mode, each at the site its HF module names
 * ({@link #site}: "bert.encoder.layer.0.attention.self.dropout"), whose keys have the top bit set.
 *
 * @param seed the run's dropout seed; negative: evaluation, no dropout
 * @param rowKeys each row's key, in batch order
 * @param model whether the base model's own dropouts apply (train mode), besides LoRA's
 */
public record Dropout(long seed, long[] rowKeys, boolean model) {
  /** Evaluation and generation: no mask. */
  public static final Dropout OFF = new Dropout(-1, new long[0], false);

  public Dropout {
    rowKeys = rowKeys.clone();
  }

  /** What a training step drops, before the batch is known: its seed (negative: nothing) and whether the model's own dropouts apply. */
  public record Plan(long seed, boolean model) {
    /** Nothing dropped: evaluation, or training with lora_dropout 0 and the model's dropouts off. */
    public static final Plan NONE = new Plan(-1, false);

    /** LoRA's dropout alone, keyed by {@code seed} (the model as in eval mode: --model-dropout off). */
    public static Plan loraOnly(long seed) {
      return new Plan(seed, false);
    }

    /** The masks of a batch's rows. */
    public Dropout over(Batch batch) {
      return seed < 0 ? OFF : new Dropout(seed, batch.rowKeys(), model);
    }
  }

  /**
   * The masks of several batches' rows stacked in order, as one batch's: each row keeps the masks its
   * own batch gives it, under its own seed. The key of a row folds its seed in (the mask hashes
   * mix(seed) ^ key, so key' = key ^ mix(seed) ^ mix(0) under seed 0 gives the same bits). Each part
   * holds its batch's row keys, a part that drops nothing too (seed −1); the parts share whether the
   * base model's own dropouts apply, as the runs of one job do.
   */
  public static Dropout concat(List<Dropout> parts) {
    boolean on = parts.stream().anyMatch(Dropout::on);
    if (!on) {
      return OFF;
    }
    boolean model = parts.stream().anyMatch(Dropout::model);
    long common = 0;
    if (parts.stream().anyMatch(d -> d.model() != model)) {
      throw new IllegalArgumentException("the parts of a mixed batch must agree on the base model's own dropouts");
    }
    long[] keys = parts.stream().flatMapToLong(d -> {
      long fold = mix(d.on() ? d.seed() : 0) ^ mix(common);
      return java.util.Arrays.stream(d.rowKeys()).map(k -> k ^ fold);
    }).toArray();
    return new Dropout(common, keys, model);
  }

  /** A base-model dropout site: the HF module that drops ("bert.embeddings.dropout") and its rate in train mode. */
  public record Site(String name, double p) {
    /** No dropout (the architecture has none there). */
    public static final Site NONE = new Site("", 0);
  }

  public boolean on() {
    return seed >= 0;
  }

  /**
   * The module key of a base-model dropout site, named as its HF module ("transformer.h.3.attn.attn_dropout"):
   * FNV-1a over the name's UTF-8 bytes, top bit set so that no site meets an adapter module's index.
   */
  public static long site(String name) {
    long h = 0xcbf29ce484222325L;
    for (byte b : name.getBytes(java.nio.charset.StandardCharsets.UTF_8)) {
      h = (h ^ (b & 0xff)) * 0x100000001b3L;
    }
    return h | Long.MIN_VALUE;
  }

  /**
   * x · mask for adapter module {@code module} at drop probability {@code p} (LoRA's dropout); x
   * itself when off or p is 0. x's first axis is the batch's rows.
   */
  public NDArray apply(NDManager manager, NDArray x, long module, double p) {
    if (!on() || p <= 0) {
      return x;
    }
    return times(manager, x, mask(x.getShape().getShape(), module, p));
  }

  /** x · mask, the mask made in {@code manager} in x's dtype. */
  private static NDArray times(NDManager manager, NDArray x, float[] mask) {
    return x.mul(manager.create(mask, x.getShape()).toType(x.getDataType(), false));
  }

  /**
   * The base model's dropout at {@code site} on x (rows first) at rate p, as its module does in
   * train mode; x itself when the model's dropouts are off. The mask lives in x's manager. A block
   * of a larger tensor whose third axis starts at {@code offset} (a block of attention rows) gets
   * the slice of the whole tensor's mask.
   */
  public NDArray model(NDArray x, String site, double p, long offset) {
    if (!model || !on() || p <= 0) {
      return x;
    }
    long[] shape = x.getShape().getShape();
    long[] origin = new long[shape.length];
    if (offset != 0) {
      origin[2] = offset;
    }
    return times(x.getManager(), x, mask(shape, origin, site(site), p));
  }

  /** The mask {@link #apply} multiplies a tensor of {@code shape} (rows first) by, row-major: 0 or 1/(1−p). */
  public float[] mask(long[] shape, long module, double p) {
    return mask(shape, new long[shape.length], module, p);
  }

  /**
   * The mask of the block of {@code shape} at {@code origin} (one offset per axis; the rows' is 0)
   * in a larger tensor of the same rows: the larger tensor's mask, sliced.
   */
  public float[] mask(long[] shape, long[] origin, long module, double p) {
    if (origin.length != shape.length || origin[0] != 0) {
      throw new IllegalArgumentException("a mask block's origin needs one offset per axis and 0 for the rows, found " + java.util.Arrays.toString(origin));
    }
    if (shape.length < 2 || shape[0] != rowKeys.length) {
      throw new IllegalStateException("a dropout mask needs a tensor of the batch's " + rowKeys.length + " rows, found shape "
          + java.util.Arrays.toString(shape));
    }
    int last = Math.toIntExact(shape[shape.length - 1]);
    long lines = 1;
    for (int d = 1; d < shape.length - 1; d++) {
      lines *= shape[d];
    }
    float[] m = new float[Math.toIntExact(shape[0] * lines * last)];
    float keep = (float) (1.0 / (1.0 - p));
    long threshold = (long) (p * (1L << 53));
    int[] index = new int[shape.length - 2];
    int o = 0;
    for (int b = 0; b < rowKeys.length; b++) {
      long rowKey = mix(mix(mix(seed) ^ rowKeys[b]) ^ module);
      java.util.Arrays.fill(index, 0);
      for (long l = 0; l < lines; l++) {
        long key = rowKey;
        for (int d = 0; d < index.length; d++) {
          key = mix(key ^ (index[d] + origin[d + 1]));
        }
        long k0 = origin[shape.length - 1];
        for (int k = 0; k < last; k++) {
          m[o++] = (mix(key + 0x9E3779B97F4A7C15L * (k0 + k + 1)) >>> 11) < threshold ? 0f : keep;
        }
        for (int d = index.length - 1; d >= 0; d--) { // the next line: an odometer over the middle axes
          if (++index[d] < shape[d + 1]) {
            break;
          }
          index[d] = 0;
        }
      }
    }
    return m;
  }

  /** SplitMix64's finalizer (Steele, Lea and Flood 2014): a bijection that spreads every input bit. */
  static long mix(long z) {
    z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
    z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
    return z ^ (z >>> 31);
  }
}
