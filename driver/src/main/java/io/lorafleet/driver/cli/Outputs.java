package io.lorafleet.driver.cli;

import io.lorafleet.driver.checkpoint.Checkpoints;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;

/**
 * The rule every command that writes a directory follows: an --out that already holds files is
 * refused, so results of two runs are never mixed or silently replaced; --overwrite clears it first.
 */
final class Outputs {
  private Outputs() {}

  /** @param inputs what the command reads: an --out that holds one of them is refused, so --overwrite never deletes an input */
  static void claim(Path out, boolean overwrite, List<Path> inputs) throws IOException {
    Path o = out.toAbsolutePath().normalize();
    for (Path in : inputs) {
      Path i = in.toAbsolutePath().normalize();
      if (i.startsWith(o)) {
        throw new IllegalArgumentException("--out " + out + " holds the input " + in + "; choose another --out");
      }
    }
    if (!Files.exists(out)) {
      return;
    }
    if (!Files.isDirectory(out)) {
      throw new IllegalArgumentException("--out " + out + " is a file, expected a directory");
    }
    List<String> held;
    try (Stream<Path> s = Files.list(out)) {
      held = s.map(p -> p.getFileName().toString()).sorted().toList();
    }
    if (held.isEmpty()) {
      return;
    }
    if (!overwrite) {
      throw new IllegalArgumentException("--out " + out + " already holds " + String.join(", ", held.subList(0, Math.min(6, held.size())))
          + (held.size() > 6 ? ", ..." : "") + "; pass --overwrite to replace it, or choose another --out");
    }
    Checkpoints.deleteTree(out);
  }
}
