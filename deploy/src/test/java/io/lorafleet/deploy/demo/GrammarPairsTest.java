package io.lorafleet.deploy.demo;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** LanguageTool's examples into minimal pairs: what is kept, what is left out, and the split. */
class GrammarPairsTest {
  static GrammarPairs.Split read(String rules) throws Exception {
    return GrammarPairs.read(new ByteArrayInputStream(("<rules lang=\"en\"><rule id=\"R\">" + rules + "</rule></rules>").getBytes(StandardCharsets.UTF_8)));
  }

  static List<GrammarPairs.Row> all(GrammarPairs.Split s) {
    List<GrammarPairs.Row> rows = new ArrayList<>(s.train());
    rows.addAll(s.heldOut());
    return rows;
  }

  @Test
  void aCorrectionGivesTheSentenceAndItsCorrectedTwin() throws Exception {
    var s = read("<example correction=\"can|could\">We <marker>cam</marker>  certainly\n help.</example><example>No correction here.</example>");
    assertEquals(List.of(new GrammarPairs.Row("We cam certainly help.", "unacceptable"), new GrammarPairs.Row("We can certainly help.", "acceptable")),
        all(s), "the first correction; whitespace runs collapsed; an example without a correction is no pair");
  }

  @Test
  void caseOnlyEmptyAndContradictedCorrectionsAreLeftOut() throws Exception {
    var s = read("<example correction=\"I\">Then <marker>i</marker> left.</example>"
        + "<example correction=\"\">A <marker>the</marker> dog.</example>"
        + "<example correction=\"an\">It is <marker>a</marker> apple.</example>"
        + "<example correction=\"a\">It is <marker>an</marker> apple.</example>"
        + "<example correction=\"its\">It has <marker>it</marker> origins.</example>");
    assertEquals(List.of(new GrammarPairs.Row("It has it origins.", "unacceptable"), new GrammarPairs.Row("It has its origins.", "acceptable")), all(s),
        "a case-only fix is invisible to an uncased tokenizer; an empty one deletes; 'It is a apple.' and 'It is an apple.' each occur with both labels");
  }

  @Test
  void theSplitDependsOnTheTextAlone() throws Exception {
    List<String> examples = new ArrayList<>();
    for (int i = 0; i < 400; i++) {
      examples.add("<example correction=\"two\">Sentence " + i + " has <marker>too</marker> words.</example>");
    }
    var a = read(String.join("", examples));
    java.util.Collections.reverse(examples);
    var b = read(String.join("", examples));
    assertEquals(new java.util.HashSet<>(a.heldOut()), new java.util.HashSet<>(b.heldOut()), "the same pairs held out in any order of the rules");
    int held = a.heldOut().size() / 2;
    assertEquals(400, held + a.train().size() / 2);
    org.junit.jupiter.api.Assertions.assertTrue(held > 15 && held < 70, "about 10% of the pairs held out, found " + held);
  }
}
