package io.lorafleet.driver.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
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
  private static final Set<String> UNSUPPORTED_PEFT = Set.of("exclude_modules", "layers_pattern", "lora_bias", "layer_replication",
      "trainable_token_indices", "megatron_config", "loftq_config", "eva_config", "corda_config");

  private JobFile() {}

  /**
   * transformers' TrainingArguments and Axolotl's names for lorafleet's flags. Each means what it
   * means there: the schedules follow transformers' definitions, per_device_train_batch_size is the
   * micro-batch, and gradient_accumulation_steps is checked against (or sets) the global batch.
   */
  static final Map<String, String> ALIASES = Map.ofEntries(Map.entry("learning_rate", "lr"), Map.entry("lr_scheduler_type", "schedule"),
      Map.entry("warmup_steps", "warmup"), Map.entry("max_grad_norm", "clip"), Map.entry("save_steps", "checkpoint-every"),
      Map.entry("save_total_limit", "keep-checkpoints"), Map.entry("eval_steps", "eval-every"), Map.entry("max_steps", "steps"),
      Map.entry("per_device_train_batch_size", "micro-batch"), Map.entry("num_train_epochs", "epochs"), Map.entry("lora_r", "r"),
      Map.entry("lora_target_modules", "target-modules"));
  static final String ACCUMULATION = "gradient_accumulation_steps";

  private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());

  /** Arguments equivalent to {@code file} for the command {@code spec}. */
  static List<String> toArgs(Path file, CommandSpec spec) {
    return toArgs(read(file), file.toString(), spec);
  }

  /** A job file's mapping. */
  static ObjectNode read(Path file) {
    if (!Files.isRegularFile(file)) {
      throw new IllegalArgumentException("--config " + file + ": no such file");
    }
    JsonNode root;
    try {
      root = YAML.readTree(file.toFile());
    } catch (IOException e) {
      throw new IllegalArgumentException("--config " + file + ": not valid YAML or JSON: " + e.getMessage().split("\n")[0]);
    }
    if (root == null || !root.isObject()) {
      throw new IllegalArgumentException("--config " + file + ": must hold a mapping of field: value");
    }
    return (ObjectNode) root;
  }

  /**
   * torchtune-style overrides after the command, {@code key=value} (a dotted {@code section.key=value}
   * for {@code run}), set into {@code root}: a value is read as YAML, so {@code lr=1e-4},
   * {@code target_modules=[q_proj,v_proj]} and {@code use_rslora=true} take their types.
   */
  static void override(ObjectNode root, List<String> overrides) {
    for (String o : overrides) {
      int eq = o.indexOf('=');
      String key = o.substring(0, eq);
      JsonNode v;
      try {
        v = YAML.readTree(o.substring(eq + 1));
      } catch (IOException e) {
        v = null;
      }
      if (v == null || v.isMissingNode()) {
        v = com.fasterxml.jackson.databind.node.TextNode.valueOf(o.substring(eq + 1));
      }
      ObjectNode at = root;
      String[] path = key.split("\\.");
      for (int i = 0; i < path.length - 1; i++) {
        at = at.has(path[i]) && at.get(path[i]).isObject() ? (ObjectNode) at.get(path[i]) : at.putObject(path[i]);
      }
      at.set(path[path.length - 1], v);
    }
  }

  /** Whether a command-line token is a {@code key=value} override rather than an option or an option's value. */
  static boolean isOverride(String token) {
    return token.matches("[A-Za-z_][A-Za-z0-9_.-]*=.*");
  }

  /** Arguments equivalent to the mapping {@code root} (a job file's, or a section of one) for the command {@code spec}. */
  static List<String> toArgs(ObjectNode root, String file, CommandSpec spec) {
    root = root.deepCopy();
    accumulation(root, file, spec);
    List<String> args = new ArrayList<>();
    if (spec.findOption("--runs") != null && (root.has("runs") || root.has("grid"))) { // a multi-run job: its runs travel as one JSON argument
      args.add("--runs");
      args.add(RunGrid.expand(root.remove("runs"), root.remove("grid"), file).toString());
    }
    for (Iterator<Map.Entry<String, JsonNode>> it = root.fields(); it.hasNext(); ) {
      Map.Entry<String, JsonNode> e = it.next();
      String key = ALIASES.containsKey(e.getKey()) && spec.findOption("--" + ALIASES.get(e.getKey())) != null ? ALIASES.get(e.getKey()) : e.getKey();
      JsonNode v = e.getValue();
      if (key.equals("epochs") && v.isNumber() && v.asDouble() != Math.rint(v.asDouble())) {
        throw new IllegalArgumentException(file + ": field '" + e.getKey() + "' is " + v + "; lorafleet trains whole epochs, expected an integer");
      }
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

  /**
   * gradient_accumulation_steps, as in transformers: global batch = accumulation × micro-batch ×
   * workers. Sets global-batch when the file gives none, and refuses one that disagrees.
   */
  private static void accumulation(ObjectNode root, String file, CommandSpec spec) {
    JsonNode acc = root.remove(ACCUMULATION);
    if (acc == null) {
      return;
    }
    if (!acc.canConvertToInt() || acc.asInt() <= 0 || spec.findOption("--global-batch") == null) {
      throw new IllegalArgumentException(file + ": field '" + ACCUMULATION + "' must be a positive integer for train but found " + acc);
    }
    long micro = number(root, spec, "micro-batch", "per_device_train_batch_size");
    long workers = number(root, spec, "workers", "workers");
    long global = (long) acc.asInt() * micro * workers;
    JsonNode given = root.has("global-batch") ? root.get("global-batch") : root.get("global_batch");
    if (given != null && given.asLong() != global) {
      throw new IllegalArgumentException(file + ": " + ACCUMULATION + " " + acc + " with micro-batch " + micro + " and " + workers + " workers makes a "
          + "global batch of " + global + " but global-batch is " + given + "; give one of them, or make them agree");
    }
    root.put("global-batch", global);
  }

  private static long number(ObjectNode root, CommandSpec spec, String flag, String alias) {
    for (String k : List.of(flag, flag.replace('-', '_'), alias)) {
      if (root.has(k)) {
        return root.get(k).asLong();
      }
    }
    return Long.parseLong(spec.findOption("--" + flag).defaultValue());
  }
}
