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
    subcommands = {InitModelCommand.class, PrepareCommand.class, TrainCommand.class, GenerateCommand.class, MergeCommand.class, AverageCommand.class, SoupCommand.class, EvalCommand.class, DemoCommand.class, PlanCommand.class, BenchStepCommand.class, BenchTrainCommand.class, BenchPrepareCommand.class, BenchCommCommand.class, QuantizeCommand.class, RunCommand.class, ServeCommand.class, BenchServeCommand.class})
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
      c.getErr().println("lorafleet " + c.getCommandName() + ": " + message(ex));
      org.slf4j.LoggerFactory.getLogger("lorafleet.trace").error("lorafleet {} failed", c.getCommandName(), ex); // the whole trace, to the log file only
      if (Boolean.getBoolean("lorafleet.verbose")) {
        ex.printStackTrace(c.getErr());
      } else if (System.getProperty("lorafleet.log.dir") != null) {
        c.getErr().println("lorafleet: the full trace is in " + Path.of(System.getProperty("lorafleet.log.dir"), "lorafleet.log"));
      }
      return reported(ex) instanceof IllegalArgumentException ? 2 : 1;
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
   * Expands "--config FILE" of a subcommand, and torchtune-style {@code key=value} overrides after it,
   * into that subcommand's flags: the file's fields with the overrides set into them, placed before
   * the command line's own flags so that those override both (picocli keeps the last value).
   */
  static String[] withJobFile(CommandLine cl, String[] args) {
    if (args.length == 0 || args[0].equals("run") || !cl.getSubcommands().containsKey(args[0])) {
      return args;
    }
    CommandLine sub = cl.getSubcommands().get(args[0]);
    List<String> rest = new ArrayList<>();
    List<String> overrides = new ArrayList<>();
    Path config = null;
    for (int i = 1; i < args.length; i++) {
      if (args[i].equals("--config") && i + 1 < args.length) {
        config = Path.of(args[++i]);
      } else if (JobFile.isOverride(args[i]) && !takesValue(sub, args[i - 1])) {
        overrides.add(args[i]);
      } else {
        rest.add(args[i]);
      }
    }
    if (config == null && overrides.isEmpty()) {
      return args;
    }
    var root = config == null ? new com.fasterxml.jackson.databind.ObjectMapper().createObjectNode() : JobFile.read(config);
    JobFile.override(root, overrides);
    List<String> out = new ArrayList<>(List.of(args[0]));
    out.addAll(JobFile.toArgs(root, config == null ? "the key=value overrides" : config.toString(), sub.getCommandSpec()));
    out.addAll(rest);
    sub.setOverwrittenOptionsAllowed(true);
    return out.toArray(String[]::new);
  }

  /** Whether {@code token} is an option of {@code sub} that takes a value (the next token is that value). */
  private static boolean takesValue(CommandLine sub, String token) {
    var o = sub.getCommandSpec().findOption(token);
    return o != null && o.arity().max() > 0;
  }

  /**
   * The one line a failed command prints: the first line of what went wrong at the bottom of the
   * cause chain, not the wrappers' (ExecutionException, Spark's "Job aborted due to stage failure …
   * Driver stacktrace"). A Spark job that failed in a task carries the task's exception as its cause
   * in local mode; on a cluster only its text, from which the task's exception line is taken.
   */
  static String message(Throwable t) {
    Throwable c = reported(t);
    String m = c.getMessage() == null ? c.toString() : c.getMessage();
    if (c.getClass().getName().equals("org.apache.spark.SparkException")) {
      java.util.regex.Matcher task = TASK_FAILURE.matcher(m);
      if (task.find()) {
        return task.group(1).trim();
      }
    }
    return m.split("\n")[0].trim();
  }

  /** In Spark's "most recent failure: Lost task … (…): some.Exception: message": the message. */
  private static final java.util.regex.Pattern TASK_FAILURE = java.util.regex.Pattern.compile(
      "most recent failure: Lost task [^:]*\\): [\\w.$]+: ([^\\n]*)");

  /**
   * The exception a failure is reported by: {@code t}, or, through the carriers that only wrap
   * another (ExecutionException, CompletionException, Spark's job failure) or say nothing, their cause.
   */
  static Throwable reported(Throwable t) {
    Throwable c = t;
    while (c.getCause() != null && c.getCause() != c && (c.getMessage() == null || c instanceof java.util.concurrent.ExecutionException
        || c instanceof java.util.concurrent.CompletionException || c.getClass().getName().equals("org.apache.spark.SparkException"))) {
      c = c.getCause();
    }
    return c;
  }

  /**
   * Exits with the command's code; inside YARN's ApplicationMaster (cluster mode) it returns on
   * success and throws on failure instead, since the ApplicationMaster runs main in a thread and
   * reports a JVM exit before main returned as a failure (and retries the application).
   */
  public static void main(String[] args) {
    int code = execute(args);
    if (!inYarnApplicationMaster()) {
      System.exit(code);
    }
    if (code != 0) {
      throw new IllegalStateException("lorafleet " + (args.length > 0 ? args[0] : "") + " failed with exit code " + code
          + "; the driver's log (the ApplicationMaster container's) has the error");
    }
  }

  /** Whether this JVM is YARN's ApplicationMaster running the driver: spark-submit --deploy-mode cluster on YARN, which sets these properties. */
  static boolean inYarnApplicationMaster() {
    return "cluster".equals(System.getProperty("spark.submit.deployMode")) && System.getProperty("spark.yarn.app.id") != null;
  }
}
