package io.lorafleet.driver.cli;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** {@code lorafleet}: the CLI entry point, also the main class for spark-submit. */
@Command(name = "lorafleet", mixinStandardHelpOptions = true, version = "lorafleet 0.1.0",
    description = "Distributed LoRA fine-tuning on Spark.",
    subcommands = {InitModelCommand.class, PrepareCommand.class, TrainCommand.class, GenerateCommand.class, MergeCommand.class, AverageCommand.class, EvalCommand.class, DemoCommand.class, PlanCommand.class, BenchStepCommand.class, BenchTrainCommand.class, BenchPrepareCommand.class, BenchCommCommand.class, QuantizeCommand.class})
public final class Main implements Runnable {
  @Override
  public void run() {
    new CommandLine(this).usage(System.out);
  }

  /** The command line, with every subcommand's help showing each option's default. */
  static CommandLine commandLine() {
    CommandLine cl = new CommandLine(new Main());
    cl.getCommandSpec().usageMessage().showDefaultValues(true);
    cl.getSubcommands().values().forEach(c -> c.getCommandSpec().usageMessage().showDefaultValues(true));
    return cl;
  }

  /** Runs the CLI and returns its exit code: 0 ok, 1 the command failed, 2 bad usage. */
  public static int execute(String... args) {
    CommandLine cl = commandLine();
    cl.setParameterExceptionHandler((ex, a) -> {
      PrintWriter err = ex.getCommandLine().getErr();
      err.println("lorafleet: " + ex.getMessage().split("\n")[0] + " (see '" + ex.getCommandLine().getCommandSpec().qualifiedName() + " --help')");
      return 2;
    });
    cl.setExecutionExceptionHandler((ex, c, p) -> {
      Throwable root = ex;
      c.getErr().println("lorafleet " + c.getCommandName() + ": " + message(ex));
      if (Boolean.getBoolean("lorafleet.verbose")) {
        root.printStackTrace(c.getErr());
      }
      return ex instanceof IllegalArgumentException ? 2 : 1;
    });
    String[] expanded;
    try {
      expanded = withJobFile(cl, args);
    } catch (IllegalArgumentException e) {
      cl.getErr().println("lorafleet: " + e.getMessage());
      return 2;
    }
    return cl.execute(expanded);
  }

  /**
   * Expands "--config FILE" of a subcommand into that subcommand's flags, placed before the command
   * line's own so that those override the file (picocli keeps the last value of an option).
   */
  static String[] withJobFile(CommandLine cl, String[] args) {
    List<String> a = new ArrayList<>(List.of(args));
    int at = a.indexOf("--config");
    if (at < 1 || at + 1 >= a.size() || !cl.getSubcommands().containsKey(a.get(0))) {
      return args;
    }
    CommandLine sub = cl.getSubcommands().get(a.get(0));
    List<String> fromFile = JobFile.toArgs(Path.of(a.get(at + 1)), sub.getCommandSpec());
    a.remove(at + 1);
    a.remove(at);
    a.addAll(1, fromFile);
    sub.setOverwrittenOptionsAllowed(true);
    return a.toArray(String[]::new);
  }

  static String message(Throwable t) {
    Throwable c = t;
    while (c.getCause() != null && (c.getMessage() == null || c instanceof java.util.concurrent.ExecutionException)) {
      c = c.getCause();
    }
    return c.getMessage() == null ? c.toString() : c.getMessage();
  }

  public static void main(String[] args) {
    System.exit(execute(args));
  }
}
