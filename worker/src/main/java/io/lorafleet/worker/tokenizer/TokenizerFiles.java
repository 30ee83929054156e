package io.lorafleet.worker.tokenizer;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Writes small tokenizers in the HF tokenizers JSON format, for tiny test and demo models: a
 * word-level vocabulary with a whitespace-and-punctuation pre-tokenizer. Ids 0..3 are the special
 * tokens &lt;pad&gt;, &lt;s&gt;, &lt;/s&gt;, &lt;unk&gt;.
 */
public final class TokenizerFiles {
  /** sentence-transformers' older layout keeps the Hugging Face model and its tokenizer in this subdirectory, beside modules.json. */
  public static final String SENTENCE_TRANSFORMERS_MODULE = "0_Transformer";

  public static final List<String> SPECIALS = List.of("<pad>", "<s>", "</s>", "<unk>");
  public static final int PAD = 0;
  public static final int BOS = 1;
  public static final int EOS = 2;

  private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

  private TokenizerFiles() {}

  /** How encoded sequences get their special tokens (the tokenizer.json post_processor). */
  public enum Specials {
    /** BOS before the sequence, as Llama's tokenizer.json. */
    BOS,
    /** RobertaProcessing: &lt;s&gt; A &lt;/s&gt;, and &lt;s&gt; A &lt;/s&gt;&lt;/s&gt; B &lt;/s&gt; for pairs. */
    ROBERTA,
    /** BERT's and DeBERTa's template, [CLS] A [SEP] and [CLS] A [SEP] B [SEP], with &lt;s&gt; and &lt;/s&gt; as CLS and SEP. */
    CLS_SEP
  }

  /** Writes tokenizer.json and tokenizer_config.json; returns the vocabulary size. */
  public static int writeWordLevel(Path dir, List<String> words) throws IOException {
    return writeWordLevel(dir, words, Specials.BOS);
  }

  /** As {@link #writeWordLevel(Path, List)}, with the given special-token post-processor. */
  public static int writeWordLevel(Path dir, List<String> words, Specials specials) throws IOException {
    Map<String, Integer> vocab = new LinkedHashMap<>();
    for (String s : SPECIALS) {
      vocab.put(s, vocab.size());
    }
    for (String w : words) {
      vocab.putIfAbsent(w, vocab.size());
    }
    ObjectNode root = JSON.createObjectNode();
    root.put("version", "1.0");
    root.putNull("truncation");
    root.putNull("padding");
    ArrayNode added = root.putArray("added_tokens");
    for (int i = 0; i < SPECIALS.size(); i++) {
      ObjectNode t = added.addObject();
      t.put("id", i);
      t.put("content", SPECIALS.get(i));
      t.put("single_word", false);
      t.put("lstrip", false);
      t.put("rstrip", false);
      t.put("normalized", false);
      t.put("special", true);
    }
    root.putNull("normalizer");
    root.putObject("pre_tokenizer").put("type", "Whitespace");
    // transformers' tokenizers apply the post-processor (not tokenizer_config's add_bos_token) when
    // they encode with special tokens: BOS for the decoders, CLS/SEP around pairs for the encoders.
    if (specials == Specials.ROBERTA) {
      ObjectNode post = root.putObject("post_processor");
      post.put("type", "RobertaProcessing");
      post.putArray("sep").add(SPECIALS.get(EOS)).add(EOS);
      post.putArray("cls").add(SPECIALS.get(BOS)).add(BOS);
      post.put("trim_offsets", true);
      post.put("add_prefix_space", false);
    } else if (specials == Specials.CLS_SEP) {
      clsSepTemplate(root.putObject("post_processor"));
    } else {
      bosTemplate(root.putObject("post_processor"));
    }
    root.putNull("decoder");
    ObjectNode model = root.putObject("model");
    model.put("type", "WordLevel");
    ObjectNode v = model.putObject("vocab");
    vocab.forEach(v::put);
    model.put("unk_token", "<unk>");
    Files.createDirectories(dir);
    Files.writeString(dir.resolve("tokenizer.json"), JSON.writeValueAsString(root) + "\n");
    ObjectNode cfg = JSON.createObjectNode();
    cfg.put("tokenizer_class", "PreTrainedTokenizerFast");
    cfg.put("bos_token", "<s>");
    cfg.put("eos_token", "</s>");
    cfg.put("pad_token", "<pad>");
    cfg.put("unk_token", "<unk>");
    if (specials != Specials.BOS) {
      cfg.put("cls_token", "<s>");
      cfg.put("sep_token", "</s>");
    }
    cfg.put("add_bos_token", specials == Specials.BOS);
    cfg.put("add_eos_token", false);
    cfg.put("model_max_length", 1024);
    Files.writeString(dir.resolve("tokenizer_config.json"), JSON.writeValueAsString(cfg) + "\n");
    return vocab.size();
  }

  private static void clsSepTemplate(ObjectNode post) {
    post.put("type", "TemplateProcessing");
    ArrayNode single = post.putArray("single");
    single.addObject().putObject("SpecialToken").put("id", SPECIALS.get(BOS)).put("type_id", 0);
    single.addObject().putObject("Sequence").put("id", "A").put("type_id", 0);
    single.addObject().putObject("SpecialToken").put("id", SPECIALS.get(EOS)).put("type_id", 0);
    ArrayNode pair = post.putArray("pair");
    pair.addObject().putObject("SpecialToken").put("id", SPECIALS.get(BOS)).put("type_id", 0);
    pair.addObject().putObject("Sequence").put("id", "A").put("type_id", 0);
    pair.addObject().putObject("SpecialToken").put("id", SPECIALS.get(EOS)).put("type_id", 0);
    pair.addObject().putObject("Sequence").put("id", "B").put("type_id", 1);
    pair.addObject().putObject("SpecialToken").put("id", SPECIALS.get(EOS)).put("type_id", 1);
    ObjectNode st = post.putObject("special_tokens");
    for (int id : new int[] {BOS, EOS}) {
      ObjectNode t = st.putObject(SPECIALS.get(id));
      t.put("id", SPECIALS.get(id));
      t.putArray("ids").add(id);
      t.putArray("tokens").add(SPECIALS.get(id));
    }
  }

  private static void bosTemplate(ObjectNode post) {
    post.put("type", "TemplateProcessing");
    ArrayNode single = post.putArray("single");
    single.addObject().putObject("SpecialToken").put("id", SPECIALS.get(BOS)).put("type_id", 0);
    single.addObject().putObject("Sequence").put("id", "A").put("type_id", 0);
    ArrayNode pair = post.putArray("pair");
    pair.addObject().putObject("SpecialToken").put("id", SPECIALS.get(BOS)).put("type_id", 0);
    pair.addObject().putObject("Sequence").put("id", "A").put("type_id", 0);
    pair.addObject().putObject("SpecialToken").put("id", SPECIALS.get(BOS)).put("type_id", 1);
    pair.addObject().putObject("Sequence").put("id", "B").put("type_id", 1);
    ObjectNode bos = post.putObject("special_tokens").putObject(SPECIALS.get(BOS));
    bos.put("id", SPECIALS.get(BOS));
    bos.putArray("ids").add(BOS);
    bos.putArray("tokens").add(SPECIALS.get(BOS));
  }
}
