package io.lorafleet.driver.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Parameters;

@Command(name = "run", mixinStandardHelpOptions = true, description = "Run a job file's sections in order: prepare:, train:, eval: (each the fields "
    + "of that command, as in --config), with a top-level spark: map of confs for all of them, and runs: and grid: sections for a multi-run "
    + "train; section.key=value overrides follow the file.")
final class RunCommand implements Callable<Integer> {
  static final List<String> SECTIONS = List.of("prepare", "train", "eval");

  @Parameters(index = "0", paramLabel = "JOB", description = "the job file (YAML or JSON)") Path file;
  @Parameters(index = "1..*", paramLabel = "SECTION.KEY=VALUE", description = "overrides, e.g. train.learning_rate=1e-4") List<String> overrides = new ArrayList<>();

  @Override
  public Integer call() {
    ObjectNode root = JobFile.read(file);
    for (String o : overrides) {
      if (!JobFile.isOverride(o) || !o.contains(".")) {
        throw new IllegalArgumentException("override '" + o + "' is not section.key=value (e.g. train.lr=1e-4)");
      }
    }
    JobFile.override(root, overrides);
    for (String multi : List.of("runs", "grid")) { // a multi-run job's runs: and grid: sections are the train section's
      if (root.has(multi)) {
        if (!(root.get("train") instanceof ObjectNode train)) {
          throw new IllegalArgumentException(file + ": section '" + multi + "' names the runs of the train section, but the file has no train section");
        }
        if (train.has(multi)) {
          throw new IllegalArgumentException(file + ": '" + multi + "' is given both as a section and inside train; give it once");
        }
        train.set(multi, root.remove(multi));
      }
    }
    List<String> unknown = new ArrayList<>();
    root.fieldNames().forEachRemaining(k -> {
      if (!SECTIONS.contains(k) && !k.equals("spark")) {
        unknown.add(k);
      }
    });
    if (!unknown.isEmpty() || SECTIONS.stream().noneMatch(root::has)) {
      throw new IllegalArgumentException(file + ": expected sections " + String.join(", ", SECTIONS) + " and spark, found " + fields(root));
    }
    CommandLine cl = Main.commandLine();
    for (String section : SECTIONS) {
      JsonNode sec = root.get(section);
      if (sec == null) {
        continue;
      }
      if (!sec.isObject()) {
        throw new IllegalArgumentException(file + ": section '" + section + "' must be a mapping of that command's fields");
      }
      ObjectNode fields = ((ObjectNode) sec).deepCopy();
      if (root.has("spark")) { // the top-level confs, under the section's own
        ObjectNode spark = root.get("spark").deepCopy();
        if (fields.get("spark") instanceof ObjectNode own) {
          spark.setAll(own);
        }
        fields.set("spark", spark);
      }
      List<String> args = new ArrayList<>(List.of(section));
      args.addAll(JobFile.toArgs(fields, file + " (section " + section + ")", cl.getSubcommands().get(section).getCommandSpec()));
      io.lorafleet.driver.report.Progress.say("== lorafleet " + section);
      int rc = Main.execute(args.toArray(String[]::new));
      if (rc != 0) {
        return rc;
      }
    }
    return 0;
  }

  private static List<String> fields(JsonNode n) {
    List<String> out = new ArrayList<>();
    n.fieldNames().forEachRemaining(out::add);
    return out;
  }
}
