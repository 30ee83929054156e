package io.lorafleet.driver;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * The architecture as the sources state it: every package of the main code says in a
 * package-info.java what it owns, and no two packages import each other, directly or round a loop.
 * Read from the sources of all modules (imports and fully qualified names; comments ignored).
 */
class PackageGraphTest {
  private static final List<String> MODULES = List.of("worker", "datasets", "driver");
  private static final Pattern PACKAGE = Pattern.compile("(?m)^package ([\\w.]+);");
  private static final Pattern REFERENCE = Pattern.compile("io\\.lorafleet\\.\\w+\\.\\w+(?=\\.[A-Z])");
  private static final Pattern COMMENT = Pattern.compile("(?s)/\\*.*?\\*/|//[^\\n]*");

  /** package -> the packages its classes reference, with one file that does for each. */
  static Map<String, Map<String, Path>> graph() throws IOException {
    Map<String, Map<String, Path>> g = new TreeMap<>();
    for (String m : MODULES) {
      try (Stream<Path> files = Files.walk(Path.of("..", m, "src", "main", "java"))) {
        for (Path f : files.filter(p -> p.toString().endsWith(".java")).toList()) {
          String text = Files.readString(f);
          Matcher pm = PACKAGE.matcher(text);
          assertTrue(pm.find(), f + " declares no package");
          String pkg = pm.group(1);
          Map<String, Path> out = g.computeIfAbsent(pkg, k -> new TreeMap<>());
          Matcher r = REFERENCE.matcher(COMMENT.matcher(text).replaceAll(""));
          while (r.find()) {
            if (!r.group().equals(pkg)) {
              out.putIfAbsent(r.group(), f);
            }
          }
        }
      }
    }
    return g;
  }

  @Test
  void noPackageImportsItselfRoundALoop() throws IOException {
    Map<String, Map<String, Path>> g = graph();
    assertTrue(g.size() > 20, "the sources were found: " + g.keySet());
    List<String> loops = new ArrayList<>();
    for (Set<String> c : components(g)) {
      if (c.size() > 1) {
        StringBuilder b = new StringBuilder(String.join(" <-> ", c)).append(':');
        for (String a : c) {
          g.get(a).forEach((to, file) -> {
            if (c.contains(to)) {
              b.append("\n  ").append(a).append(" -> ").append(to).append(" (").append(file.getFileName()).append(')');
            }
          });
        }
        loops.add(b.toString());
      }
    }
    assertEquals(List.of(), loops, "package loops");
  }

  @Test
  void everyPackageSaysWhatItOwns() throws IOException {
    List<String> missing = new ArrayList<>();
    for (String m : MODULES) {
      try (Stream<Path> dirs = Files.walk(Path.of("..", m, "src", "main", "java"))) {
        for (Path d : dirs.filter(Files::isDirectory).toList()) {
          boolean code;
          try (Stream<Path> fs = Files.list(d)) {
            code = fs.anyMatch(p -> p.toString().endsWith(".java"));
          }
          if (code && !Files.isRegularFile(d.resolve("package-info.java"))) {
            missing.add(d.toString());
          }
        }
      }
    }
    assertEquals(List.of(), missing, "packages without a package-info.java");
  }

  /** Tarjan's strongly connected components. */
  private static List<Set<String>> components(Map<String, Map<String, Path>> g) {
    Map<String, Integer> index = new HashMap<>();
    Map<String, Integer> low = new HashMap<>();
    Deque<String> stack = new ArrayDeque<>();
    List<Set<String>> out = new ArrayList<>();
    for (String v : g.keySet()) {
      if (!index.containsKey(v)) {
        visit(v, g, index, low, stack, out);
      }
    }
    return out;
  }

  private static void visit(String v, Map<String, Map<String, Path>> g, Map<String, Integer> index, Map<String, Integer> low, Deque<String> stack,
      List<Set<String>> out) {
    index.put(v, index.size());
    low.put(v, index.get(v));
    stack.push(v);
    for (String w : g.getOrDefault(v, Map.of()).keySet()) {
      if (!index.containsKey(w)) {
        visit(w, g, index, low, stack, out);
        low.put(v, Math.min(low.get(v), low.get(w)));
      } else if (stack.contains(w)) {
        low.put(v, Math.min(low.get(v), index.get(w)));
      }
    }
    if (low.get(v).equals(index.get(v))) {
      Set<String> c = new TreeSet<>();
      String w;
      do {
        w = stack.pop();
        c.add(w);
      } while (!w.equals(v));
      out.add(c);
    }
  }
}
