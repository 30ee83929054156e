package io.lorafleet.worker.lora;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.ServiceLoader;
import java.util.Set;

/**
 * The registered PEFT methods: every {@link PeftMethod.Provider} that {@link ServiceLoader} finds
 * (lorafleet's own, LoRA with DoRA, VeRA and AdaLoRA, are listed in this module's
 * META-INF/services like any other). A method is found by its --peft-type name, or by the
 * peft_type of an adapter_config.json.
 */
public final class PeftMethods {
  private PeftMethods() {}

  /**
   * A method's own settings as the command line gave them: each flag's value by name without
   * "--" (defaults included), and which flags were given.
   */
  public record Options(Map<String, String> values, Set<String> given) {
    public Options {
      values = Map.copyOf(values);
      given = Set.copyOf(given);
    }

    public boolean given(String name) {
      return given.contains(name);
    }

    public boolean flag(String name) {
      return Boolean.parseBoolean(values.getOrDefault(name, "false"));
    }

    public int integer(String name, int dflt) {
      return values.containsKey(name) ? Integer.parseInt(values.get(name)) : dflt;
    }

    public long longValue(String name, long dflt) {
      return values.containsKey(name) ? Long.parseLong(values.get(name)) : dflt;
    }

    public double real(String name, double dflt) {
      return values.containsKey(name) ? Double.parseDouble(values.get(name)) : dflt;
    }
  }

  /** Every provider on the class path, in the order found. */
  static List<PeftMethod.Provider> providers() {
    List<PeftMethod.Provider> out = new ArrayList<>();
    ServiceLoader.load(PeftMethod.Provider.class).forEach(out::add);
    return out;
  }

  /** The --peft-type names, in the order found. */
  public static List<String> names() {
    return providers().stream().flatMap(p -> p.names().stream()).toList();
  }

  /** {@code base} with the method named {@code name} and its settings from {@code options}. */
  public static LoraConfig configure(String name, Options options, LoraConfig base) {
    String n = name.toLowerCase(java.util.Locale.ROOT);
    for (PeftMethod.Provider p : providers()) {
      if (p.names().contains(n)) {
        return p.configure(n, options, base);
      }
    }
    throw new IllegalArgumentException("--peft-type must be " + either(names()) + " but found '" + name + "'");
  }

  /** The provider that reads adapter_config.json {@code n} (in {@code file}), by its peft_type. */
  static PeftMethod.Provider forConfig(Path file, JsonNode n) {
    String type = n.path("peft_type").asText("");
    Map<String, PeftMethod.Provider> byType = new LinkedHashMap<>();
    for (PeftMethod.Provider p : providers()) {
      p.peftTypes().forEach(t -> byType.putIfAbsent(t, p));
    }
    PeftMethod.Provider p = byType.get(type);
    if (p == null) {
      throw new IllegalArgumentException(file + ": peft_type is '" + type + "', expected " + either(new ArrayList<>(byType.keySet())));
    }
    return p;
  }

  /** "a", "a or b", "a, b or c". */
  private static String either(List<String> xs) {
    return xs.size() <= 1 ? String.join("", xs) : String.join(", ", xs.subList(0, xs.size() - 1)) + " or " + xs.get(xs.size() - 1);
  }
}
