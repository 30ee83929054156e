package io.lorafleet.datasets.prepare;

import io.lorafleet.datasets.arrow.Example;
import io.lorafleet.datasets.fs.NodeCopy;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.tokenizer.Tokenizer;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.concurrent.ConcurrentHashMap;

/**
 * (context, target) → label-masked example. Context and target are encoded separately and
 * concatenated: [BOS if the tokenizer config adds it] + context, then target + [EOS], so the model
 * learns to stop. Labels are -100 on the context (unless train-on-inputs) and on BOS.
 */
public final class Tokenize {
  /** One tokenizer per executor JVM and model directory, never one per row. */
  private static final ConcurrentHashMap<String, Tokenizer> CACHE = new ConcurrentHashMap<>();

  private Tokenize() {}

  private static final ConcurrentHashMap<String, io.lorafleet.worker.model.ModelConfig> CONFIGS = new ConcurrentHashMap<>();

  /** The model's config as these options read the records: with --labels' classes when given (train checks them against the checkpoint's head). */
  static io.lorafleet.worker.model.ModelConfig config(PrepareOptions o) {
    var c = config(o.tokens().modelDir());
    var labels = o.records().labels();
    if (labels.fromConfig()) {
      return c;
    }
    if (!c.arch().encoder()) {
      throw new IllegalArgumentException("--labels applies to --format classification with a sequence classifier, not " + o.tokens().modelDir()
          + ", a " + c.modelType() + " causal LM");
    }
    return CONFIGS.computeIfAbsent(o.tokens().modelDir() + "@" + labels,
        k -> io.lorafleet.worker.model.ModelConfig.fromJson(labels.applyTo(c.raw()), o.tokens().modelDir() + "/config.json with " + labels.describe()));
  }

  /** The model's config.json, read once per executor (from this node's copy of the tokenizer files, for a URI). */
  public static io.lorafleet.worker.model.ModelConfig config(String modelDir) {
    return CONFIGS.computeIfAbsent(modelDir, d -> io.lorafleet.worker.model.ModelConfig.read(local(d).resolve("config.json")));
  }

  /** vocab_size from the model's config.json. */
  public static int vocabSize(String modelDir) {
    return config(modelDir).vocabSize();
  }

  public static Tokenizer tokenizer(String modelDir) {
    return CACHE.computeIfAbsent(modelDir, d -> Tokenizer.load(local(d)));
  }

  /** A model directory's tokenizer files on this node: the directory itself, or for a URI its verified node copy. */
  private static Path local(String modelDir) {
    return NodeCopy.of(modelDir, NodeCopy.Kind.TOKENIZER);
  }

  /** The example and whether its context was truncated. */
  public record Result(Example example, boolean truncated) {}

  /** A raw record in the options' format → example. */
  public static Result record(Tokenizer tok, java.util.Map<String, Object> rec, PrepareOptions o, int vocabSize) {
    if (o.records().format() == RecordFormat.PRETOKENIZED) {
      return Pretokenized.example(rec, o, vocabSize);
    }
    if (o.records().format() == RecordFormat.CHAT) {
      return ChatFormat.example(tok, ChatFormat.template(tok), rec, o);
    }
    if (o.records().format() == RecordFormat.CLASSIFICATION) {
      return Classification.example(tok, rec, o, config(o));
    }
    return encode(tok, o.records().format().toPair(rec, o), o);
  }

  public static Result encode(Tokenizer tok, RecordFormat.Pair p, PrepareOptions o) {
    int[] ctx = tok.encode(p.context());
    int[] tgt = tok.encode(p.target());
    if (tgt.length == 0) {
      throw new RecordFormat.BadRecord("target tokenizes to nothing");
    }
    int bos = tok.addBos() ? 1 : 0;
    int eos = tok.eos().isPresent() ? 1 : 0;
    int total = bos + ctx.length + tgt.length + eos;
    boolean truncated = false;
    if (total > o.tokens().maxSeqLen()) {
      int room = o.tokens().maxSeqLen() - bos - tgt.length - eos;
      if (o.tokens().truncation().equals("drop") || room < 0) {
        throw new RecordFormat.BadRecord("too long: " + total + " tokens, --max-seq-len is " + o.tokens().maxSeqLen()
            + (room < 0 ? " and the target alone does not fit" : " (--truncation drop)"));
      }
      ctx = Arrays.copyOfRange(ctx, ctx.length - room, ctx.length); // keep the context's end, next to the target
      truncated = true;
      total = o.tokens().maxSeqLen();
    }
    int[] ids = new int[total];
    int[] labels = new int[total];
    int k = 0;
    if (bos == 1) {
      ids[k] = tok.bos().get();
      labels[k++] = Batch.IGNORE;
    }
    for (int c : ctx) {
      ids[k] = c;
      labels[k++] = o.records().trainOnInputs() ? c : Batch.IGNORE;
    }
    for (int t : tgt) {
      ids[k] = t;
      labels[k++] = t;
    }
    if (eos == 1) {
      ids[k] = tok.eos().get();
      labels[k] = tok.eos().get();
    }
    return new Result(new Example(ids, labels), truncated);
  }
}
