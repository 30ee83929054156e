package io.lorafleet.worker.tokenizer;

import ai.djl.huggingface.tokenizers.Encoding;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.Optional;

/**
 * A model directory's tokenizer (tokenizer.json through DJL's HF tokenizers binding) with the
 * BOS/EOS policy of tokenizer_config.json. Special tokens are added by this class, never by the
 * binding, so context and target can be encoded separately and concatenated exactly.
 */
public final class Tokenizer implements AutoCloseable {
  private final HuggingFaceTokenizer hf;
  private final Optional<Integer> bos;
  private final Optional<Integer> eos;
  private final boolean addBos;
  private final boolean addEos;
  private final String fingerprint;
  private final JsonNode tokenizerConfig;
  private final Path json;
  /** Tokenizers that truncate pairs longest-first to a length, built on first use per length. */
  private final java.util.Map<Integer, HuggingFaceTokenizer> truncating = new java.util.concurrent.ConcurrentHashMap<>();

  private Tokenizer(HuggingFaceTokenizer hf, Optional<Integer> bos, Optional<Integer> eos, boolean addBos, boolean addEos, String fingerprint, JsonNode cfg,
      Path json) {
    this.json = json;
    this.hf = hf;
    this.bos = bos;
    this.eos = eos;
    this.addBos = addBos;
    this.addEos = addEos;
    this.fingerprint = fingerprint;
    this.tokenizerConfig = cfg;
  }

  public static Tokenizer load(Path given) {
    Path module = given.resolve(TokenizerFiles.SENTENCE_TRANSFORMERS_MODULE); // sentence-transformers' older layout keeps it there
    Path modelDir = !Files.isRegularFile(given.resolve("tokenizer.json")) && Files.isRegularFile(module.resolve("tokenizer.json")) ? module : given;
    Path json = modelDir.resolve("tokenizer.json");
    if (!Files.isRegularFile(json)) {
      throw new IllegalArgumentException(modelDir + ": tokenizer.json is missing");
    }
    try {
      JsonNode cfg = new ObjectMapper().createObjectNode();
      Path cfgFile = modelDir.resolve("tokenizer_config.json");
      if (Files.isRegularFile(cfgFile)) {
        cfg = new ObjectMapper().readTree(cfgFile.toFile());
      }
      HuggingFaceTokenizer hf = HuggingFaceTokenizer.builder()
          .optTokenizerPath(json)
          .optAddSpecialTokens(false)
          .optTruncation(false)
          .optPadding(false)
          .build();
      Optional<Integer> bos = tokenId(hf, cfg.get("bos_token"));
      Optional<Integer> eos = tokenId(hf, cfg.get("eos_token"));
      // Llama-style configs say add_bos_token; without the key nothing is added (GPT-2's behaviour).
      boolean addBos = cfg.path("add_bos_token").asBoolean(false);
      boolean addEos = cfg.path("add_eos_token").asBoolean(false);
      MessageDigest sha = MessageDigest.getInstance("SHA-256");
      sha.update(Files.readAllBytes(json));
      return new Tokenizer(hf, bos, eos, addBos, addEos, HexFormat.of().formatHex(sha.digest()), cfg, json);
    } catch (IOException | NoSuchAlgorithmException e) {
      throw new IllegalArgumentException(json + ": cannot load tokenizer: " + e.getMessage(), e);
    }
  }

  private static Optional<Integer> tokenId(HuggingFaceTokenizer hf, JsonNode tok) {
    if (tok == null || tok.isNull()) {
      return Optional.empty();
    }
    String s = tok.isTextual() ? tok.asText() : tok.path("content").asText();
    Encoding e = hf.encode(s, false, false);
    long[] ids = e.getIds();
    return ids.length == 1 ? Optional.of((int) ids[0]) : Optional.empty();
  }

  /** Token ids of raw text, no special tokens. */
  public int[] encode(String text) {
    return ints(hf.encode(text, false, false).getIds());
  }

  /**
   * A text, or a pair of texts, with the special tokens the tokenizer's post-processor puts around
   * them (RoBERTa's &lt;s&gt; A &lt;/s&gt;&lt;/s&gt; B &lt;/s&gt;, BERT's and DeBERTa's [CLS] A [SEP] B [SEP]): what
   * transformers' tokenizer(text, text_pair) gives a sequence classifier, with the token type ids
   * the post-processor gives them (BERT's 1 for the second text of a pair and its [SEP]).
   */
  public Classified encodeForClassification(String text, Optional<String> pair) {
    return classified(pair.isPresent() ? hf.encode(text, pair.get(), true, false) : hf.encode(text, true, false));
  }

  /** A classifier's input: token ids and their token type ids (as long as the ids). */
  public record Classified(int[] ids, int[] types) {
    public Classified {
      if (types.length != ids.length) {
        throw new IllegalArgumentException(types.length + " token types for " + ids.length + " tokens");
      }
    }
  }

  private static Classified classified(ai.djl.huggingface.tokenizers.Encoding e) {
    return new Classified(ints(e.getIds()), ints(e.getTypeIds()));
  }

  /**
   * As {@link #encodeForClassification(String, Optional)}, truncated to {@code maxLength} tokens as
   * transformers' tokenizer(text, text_pair, truncation=True, max_length=n) does: tokens are taken
   * from the end of the longer text, one at a time (longest_first), and the special tokens are put
   * around what is left.
   */
  public Classified encodeForClassification(String text, Optional<String> pair, int maxLength) {
    HuggingFaceTokenizer t = truncating.computeIfAbsent(maxLength, n -> {
      try {
        return HuggingFaceTokenizer.builder().optTokenizerPath(json).optAddSpecialTokens(true).optTruncation(true).optMaxLength(n).optPadding(false).build();
      } catch (IOException e) {
        throw new IllegalArgumentException(json + ": cannot load tokenizer: " + e.getMessage(), e);
      }
    });
    return classified(pair.isPresent() ? t.encode(text, pair.get(), true, false) : t.encode(text, true, false));
  }

  private static int[] ints(long[] ids) {
    int[] out = new int[ids.length];
    for (int i = 0; i < ids.length; i++) {
      out[i] = (int) ids[i];
    }
    return out;
  }

  /** A generation prompt: the text's ids, after BOS when the tokenizer config adds one. */
  public int[] encodePrompt(String text) {
    int[] body = encode(text);
    if (!addBos()) {
      return body;
    }
    int[] ids = new int[body.length + 1];
    ids[0] = bos.get();
    System.arraycopy(body, 0, ids, 1, body.length);
    return ids;
  }

  public String decode(int[] ids) {
    long[] l = new long[ids.length];
    for (int i = 0; i < ids.length; i++) {
      l[i] = ids[i];
    }
    return hf.decode(l, true);
  }

  public Optional<Integer> bos() {
    return bos;
  }

  public Optional<Integer> eos() {
    return eos;
  }

  public boolean addBos() {
    return addBos && bos.isPresent();
  }

  public boolean addEos() {
    return addEos && eos.isPresent();
  }

  /** SHA-256 of tokenizer.json: a dataset and a base model must agree on it. */
  public String fingerprint() {
    return fingerprint;
  }

  public JsonNode tokenizerConfig() {
    return tokenizerConfig;
  }

  @Override
  public void close() {
    hf.close();
    truncating.values().forEach(HuggingFaceTokenizer::close);
  }
}
