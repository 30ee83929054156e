package io.lorafleet.deploy;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/** Runs the project's own scripts as a user would, with a bounded time and the output kept for failures. */
final class Shell {
  static final Path ROOT = Path.of(System.getProperty("user.dir")).getParent();

  record Result(int code, String output) {}

  private Shell() {}

  static Process start(List<String> cmd, Map<String, String> env, Path log) throws IOException {
    ProcessBuilder pb = new ProcessBuilder(cmd).directory(ROOT.toFile()).redirectErrorStream(true).redirectOutput(log.toFile());
    pb.environment().putAll(env);
    return pb.start();
  }

  static Result run(List<String> cmd, Map<String, String> env, Path log, int timeoutSec) throws Exception {
    Process p = start(cmd, env, log);
    if (!p.waitFor(timeoutSec, TimeUnit.SECONDS)) {
      p.destroyForcibly();
      throw new AssertionError(String.join(" ", cmd) + " did not finish within " + timeoutSec + " s; output:\n" + read(log));
    }
    return new Result(p.exitValue(), read(log));
  }

  static Result ok(List<String> cmd, Map<String, String> env, Path log, int timeoutSec) throws Exception {
    Result r = run(cmd, env, log, timeoutSec);
    if (r.code() != 0) {
      throw new AssertionError(String.join(" ", cmd) + " exited " + r.code() + "; output:\n" + r.output());
    }
    return r;
  }

  static String read(Path f) throws IOException {
    return Files.exists(f) ? Files.readString(f, StandardCharsets.UTF_8) : "";
  }
}
