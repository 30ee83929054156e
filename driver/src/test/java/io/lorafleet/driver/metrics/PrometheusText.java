package io.lorafleet.driver.metrics;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A strict parser of Prometheus' text exposition format 0.0.4 (prometheus.io/docs/instrumenting/exposition_formats):
 * "# HELP" and "# TYPE" lines, and samples {@code name{label="value",...} value [timestamp]} with
 * escaped label values and Go float values (NaN, +Inf, -Inf). Anything else is an error naming the line.
 */
public final class PrometheusText {
  public record Sample(String name, Map<String, String> labels, double value) {}

  private static final Pattern NAME = Pattern.compile("[a-zA-Z_:][a-zA-Z0-9_:]*");
  private static final Pattern LABEL = Pattern.compile("\\s*([a-zA-Z_][a-zA-Z0-9_]*)=\"((?:[^\"\\\\\\n]|\\\\[\\\\\"n])*)\"\\s*(,|$)");
  private static final Pattern TYPE = Pattern.compile("# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram|summary|untyped)");

  private PrometheusText() {}

  public static List<Sample> parse(String text) {
    List<Sample> out = new ArrayList<>();
    String[] lines = text.split("\n", -1);
    for (int n = 0; n < lines.length; n++) {
      String line = lines[n];
      if (line.isBlank()) {
        continue;
      }
      if (line.startsWith("#")) {
        if (line.startsWith("# TYPE") && !TYPE.matcher(line).matches()) {
          throw new IllegalArgumentException("line " + (n + 1) + ": bad TYPE line: " + line);
        }
        continue; // HELP and other comments
      }
      Matcher name = NAME.matcher(line);
      if (!name.lookingAt()) {
        throw new IllegalArgumentException("line " + (n + 1) + ": no metric name: " + line);
      }
      int at = name.end();
      Map<String, String> labels = new LinkedHashMap<>();
      if (at < line.length() && line.charAt(at) == '{') {
        int close = line.indexOf('}', at);
        if (close < 0) {
          throw new IllegalArgumentException("line " + (n + 1) + ": unclosed labels: " + line);
        }
        String body = line.substring(at + 1, close);
        Matcher l = LABEL.matcher(body);
        int pos = 0;
        while (pos < body.length() && l.find(pos) && l.start() == pos) {
          labels.put(l.group(1), l.group(2).replace("\\n", "\n").replace("\\\"", "\"").replace("\\\\", "\\"));
          pos = l.end();
        }
        if (pos != body.length()) {
          throw new IllegalArgumentException("line " + (n + 1) + ": bad labels: " + line);
        }
        at = close + 1;
      }
      String[] rest = line.substring(at).trim().split("\\s+");
      if (rest.length < 1 || rest.length > 2 || rest[0].isEmpty()) {
        throw new IllegalArgumentException("line " + (n + 1) + ": expected a value and an optional timestamp: " + line);
      }
      double v = switch (rest[0]) {
        case "NaN" -> Double.NaN;
        case "+Inf" -> Double.POSITIVE_INFINITY;
        case "-Inf" -> Double.NEGATIVE_INFINITY;
        default -> Double.parseDouble(rest[0]);
      };
      if (rest.length == 2) {
        Long.parseLong(rest[1]);
      }
      out.add(new Sample(name.group(), labels, v));
    }
    return out;
  }
}
