package io.lorafleet.deploy.demo;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import javax.xml.stream.XMLInputFactory;
import javax.xml.stream.XMLStreamConstants;
import javax.xml.stream.XMLStreamException;
import javax.xml.stream.XMLStreamReader;

/**
 * English acceptability as minimal pairs, from LanguageTool's English rules (org.languagetool:language-en,
 * LGPL-2.1): every {@code <example correction="…">} of grammar.xml is a sentence with an error marked
 * by {@code <marker>}; with the marker replaced by the first correction it is the same sentence made
 * right. The pair gives one "unacceptable" and one "acceptable" row, so the classes are balanced and
 * differ only where the rule's author said.
 *
 * <p>Kept out: corrections that differ only in letter case (the uncased tokenizer of all-MiniLM-L6-v2
 * cannot see them), empty corrections, sentences over 200 characters, and any sentence that occurs
 * with both labels. A pair goes to the held-out split when the first byte of its unacceptable
 * sentence's SHA-256 is below 26 (about 10%): the split depends on the text alone.
 */
public final class GrammarPairs {
  /** The rules' file inside language-en's jar. */
  public static final String GRAMMAR = "/org/languagetool/rules/en/grammar.xml";

  /** One labelled sentence. */
  public record Row(String text, String label) {}

  /** The pairs' rows, each pair's two rows together, unacceptable first. */
  public record Split(List<Row> train, List<Row> heldOut) {}

  private GrammarPairs() {}

  /** The rows of grammar.xml read from {@code in}. */
  public static Split read(InputStream in) throws IOException {
    List<String[]> pairs = new ArrayList<>(); // {unacceptable, acceptable}
    try {
      XMLStreamReader x = XMLInputFactory.newFactory().createXMLStreamReader(in);
      String correction = null;
      StringBuilder before = new StringBuilder();
      StringBuilder marked = new StringBuilder();
      StringBuilder after = new StringBuilder();
      int part = -1; // -1 outside an example with a correction; 0 before, 1 in, 2 after the marker
      while (x.hasNext()) {
        int e = x.next();
        if (e == XMLStreamConstants.START_ELEMENT && x.getLocalName().equals("example")) {
          correction = x.getAttributeValue(null, "correction");
          part = correction == null ? -1 : 0;
          before.setLength(0);
          marked.setLength(0);
          after.setLength(0);
        } else if (part >= 0 && e == XMLStreamConstants.START_ELEMENT && x.getLocalName().equals("marker")) {
          part = 1;
        } else if (part >= 0 && e == XMLStreamConstants.END_ELEMENT && x.getLocalName().equals("marker")) {
          part = 2;
        } else if (part >= 0 && (e == XMLStreamConstants.CHARACTERS || e == XMLStreamConstants.CDATA)) {
          (part == 0 ? before : part == 1 ? marked : after).append(x.getText());
        } else if (e == XMLStreamConstants.END_ELEMENT && x.getLocalName().equals("example")) {
          if (part == 2) {
            String fix = correction.split("\\|", -1)[0];
            String bad = clean(before + marked.toString() + after);
            String good = clean(before + fix + after);
            if (!fix.isBlank() && !bad.toLowerCase(Locale.ROOT).equals(good.toLowerCase(Locale.ROOT)) && bad.length() <= 200 && good.length() <= 200) {
              pairs.add(new String[] {bad, good});
            }
          }
          part = -1;
        }
      }
    } catch (XMLStreamException e) {
      throw new IOException("grammar.xml: " + e.getMessage(), e);
    }
    Map<String, String> labelOf = new HashMap<>();
    Map<String, Boolean> contradicted = new HashMap<>();
    for (String[] p : pairs) {
      for (int i = 0; i < 2; i++) {
        String label = i == 0 ? "unacceptable" : "acceptable";
        String was = labelOf.putIfAbsent(p[i], label);
        if (was != null && !was.equals(label)) {
          contradicted.put(p[i], true);
        }
      }
    }
    Map<String, String[]> unique = new LinkedHashMap<>();
    for (String[] p : pairs) {
      if (!contradicted.containsKey(p[0]) && !contradicted.containsKey(p[1])) {
        unique.putIfAbsent(p[0] + "\n" + p[1], p);
      }
    }
    List<Row> train = new ArrayList<>();
    List<Row> heldOut = new ArrayList<>();
    for (String[] p : unique.values()) {
      List<Row> to = (sha256(p[0])[0] & 0xff) < 26 ? heldOut : train;
      to.add(new Row(p[0], "unacceptable"));
      to.add(new Row(p[1], "acceptable"));
    }
    return new Split(train, heldOut);
  }

  private static String clean(String s) {
    return s.replaceAll("\\s+", " ").trim();
  }

  private static byte[] sha256(String s) {
    try {
      return MessageDigest.getInstance("SHA-256").digest(s.getBytes(StandardCharsets.UTF_8));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }
}
