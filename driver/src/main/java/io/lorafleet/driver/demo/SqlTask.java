package io.lorafleet.driver.demo;

import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;

/**
 * A generated natural-language-to-SQL task over a small generated schema. Nothing is copied from
 * anywhere: questions and queries come from templates filled at random with a seed.
 */
public final class SqlTask {
  record Table(String name, List<String> columns) {}

  static final List<Table> SCHEMA = List.of(
      new Table("users", List.of("name", "age", "city", "score")),
      new Table("orders", List.of("id", "total", "status", "quantity")),
      new Table("products", List.of("title", "price", "stock", "rating")),
      new Table("employees", List.of("salary", "dept", "level", "tenure")));

  /** One example: the question (context) and the SQL (target), tokens separated by spaces. */
  public record Pair(String question, String sql) {}

  private SqlTask() {}

  public static List<Pair> generate(int n, long seed) {
    Random r = new Random(seed);
    List<Pair> out = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      Table t = SCHEMA.get(r.nextInt(SCHEMA.size()));
      String c1 = t.columns().get(r.nextInt(4));
      String c2 = t.columns().get(r.nextInt(4));
      int v = r.nextInt(100);
      switch (r.nextInt(4)) {
        case 0 -> out.add(new Pair("show the " + c1 + " of " + t.name() + " where " + c2 + " is greater than " + v,
            "SELECT " + c1 + " FROM " + t.name() + " WHERE " + c2 + " > " + v));
        case 1 -> out.add(new Pair("how many " + t.name() + " have " + c2 + " below " + v,
            "SELECT COUNT ( * ) FROM " + t.name() + " WHERE " + c2 + " < " + v));
        case 2 -> out.add(new Pair("list every " + c1 + " in " + t.name() + " sorted by " + c2,
            "SELECT " + c1 + " FROM " + t.name() + " ORDER BY " + c2));
        default -> out.add(new Pair("what is the average " + c1 + " of " + t.name() + " with " + c2 + " equal to " + v,
            "SELECT AVG ( " + c1 + " ) FROM " + t.name() + " WHERE " + c2 + " = " + v));
      }
    }
    return out;
  }

  /** Every word the task can produce, for the demo model's word-level tokenizer. */
  public static List<String> vocabulary() {
    Set<String> w = new LinkedHashSet<>(List.of("show", "the", "of", "where", "is", "greater", "than", "how", "many", "have", "below", "list", "every",
        "in", "sorted", "by", "what", "average", "with", "equal", "to", "SELECT", "FROM", "WHERE", "COUNT", "(", "*", ")", ">", "<", "=", "ORDER", "BY", "AVG", "question", ":", "sql", "copy", "=>"));
    for (Table t : SCHEMA) {
      w.add(t.name());
      w.addAll(t.columns());
    }
    for (int i = 0; i < 100; i++) {
      w.add(Integer.toString(i));
    }
    return List.copyOf(w);
  }
}
