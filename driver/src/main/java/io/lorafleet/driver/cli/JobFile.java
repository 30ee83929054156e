package io.lorafleet.driver.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;

/**
 * A job file (YAML or JSON) for a subcommand: its fields are the subcommand's flags without "--"
 * (lists become comma-separated values, {@code true} switches a flag on), and an optional
 * {@code spark} map of Spark confs. The file's fields become arguments placed before the command
 * line's, so any flag given on the command line overrides the file. One file drives local,
 * standalone, Kubernetes and YARN runs alike.
 */
final class JobFile {
  /** PEFT LoraConfig fields lorafleet does not implement: refused by name rather than as unknown. */
  private static final Set<String> UNSUPPORTED_PEFT = Set.of("exclude_modules", "layers_pattern", "modules_to_save", "lora_bias", "layer_replication",
      "trainable_token_indices", "megatron_config", "loftq_config", "eva_config", "corda_config");

  private JobFile() {}

  /** Arguments equivalent to {@code file} for the command {@code spec}. */
  static List<String> toArgs(Path file, CommandSpec spec) {
    if (!Files.isRegularFile(file)) {
      throw new IllegalArgumentException("--config " + file + ": no such file");
    }
    JsonNode root;
    try {
      root = new ObjectMapper(new YAMLFactory()).readTree(file.toFile());
    } catch (IOException e) {
      throw new IllegalArgumentException("--config " + file + ": not valid YAML or JSON: " + e.getMessage().split("\n")[0]);
    }
    if (root == null || !root.isObject()) {
      throw new IllegalArgumentException("--config " + file + ": must hold a mapping of field: value");
    }
    List<String> args = new ArrayList<>();
    for (Iterator<Map.Entry<String, JsonNode>> it = root.fields(); it.hasNext(); ) {
      Map.Entry<String, JsonNode> e = it.next();
      String key = e.getKey();
      JsonNode v = e.getValue();
      if (key.equals("spark")) {
        if (!v.isObject()) {
          throw new IllegalArgumentException(file + ": field 'spark' must be a mapping of Spark conf to value");
        }
        v.fields().forEachRemaining(c -> {
          args.add("--spark-conf");
          args.add(c.getKey() + "=" + c.getValue().asText());
        });
        continue;
      }
      OptionSpec opt = spec.findOption("--" + key);
      if (opt == null && key.contains("_")) { // PEFT's and transformers' spelling: use_rslora for --use-rslora
        opt = spec.findOption("--" + key.replace('_', '-'));
        key = key.replace('_', '-');
      }
      if (opt == null && UNSUPPORTED_PEFT.contains(key.replace('-', '_'))) {
        throw new IllegalArgumentException(file + ": field '" + e.getKey() + "' is a PEFT LoraConfig option that lorafleet does not support");
      }
      if (opt == null || key.equals("config")) {
        Set<String> known = new TreeSet<>();
        spec.options().forEach(o -> {
          String n = o.longestName();
          if (n.startsWith("--") && !n.equals("--help") && !n.equals("--version") && !n.equals("--config")) {
            known.add(n.substring(2));
          }
        });
        throw new IllegalArgumentException(file + ": unknown field '" + key + "'; " + spec.qualifiedName() + " takes " + String.join(", ", known) + ", spark");
      }
      if (opt.arity().max() == 0) {
        if (!v.isBoolean()) {
          throw new IllegalArgumentException(file + ": field '" + key + "' is a switch and must be true or false but found " + v);
        }
        if (v.asBoolean()) {
          args.add("--" + key);
        }
        continue;
      }
      if (v.isObject()) {
        if (!opt.typeInfo().isMap()) {
          throw new IllegalArgumentException(file + ": field '" + key + "' must be a value or a list but found a mapping");
        }
        for (Iterator<Map.Entry<String, JsonNode>> m = v.fields(); m.hasNext(); ) { // rank_pattern: {q_proj: 8}
          Map.Entry<String, JsonNode> kv = m.next();
          args.add("--" + key);
          args.add(kv.getKey() + "=" + kv.getValue().asText());
        }
        continue;
      }
      List<String> parts = new ArrayList<>();
      if (v.isArray()) {
        v.forEach(x -> parts.add(x.asText()));
      } else {
        parts.add(v.asText());
      }
      args.add("--" + key);
      args.add(String.join(",", parts));
    }
    return args;
  }
}
