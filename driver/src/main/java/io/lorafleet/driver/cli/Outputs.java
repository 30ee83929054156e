package io.lorafleet.driver.cli;

import io.lorafleet.datasets.fs.HadoopConf;
import io.lorafleet.driver.checkpoint.RunOutput;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * The rule every command that writes a directory follows: an --out that already holds files is
 * refused, so results of two runs are never mixed or silently replaced; --overwrite clears it first.
 * The --out may be a plain path or a Hadoop URI: the command writes into the returned output's
 * {@link RunOutput#local()} and then {@link RunOutput#publishAll() publishes} it.
 */
final class Outputs {
  private Outputs() {}

  /** @param inputs what the command reads: an --out that holds one of them is refused, so --overwrite never deletes an input */
  static RunOutput claim(String out, boolean overwrite, List<String> inputs) throws IOException {
    String o = normalized(out);
    for (String in : inputs) {
      String i = normalized(in);
      if (i.equals(o) || i.startsWith(o.endsWith("/") ? o : o + "/")) {
        throw new IllegalArgumentException("--out " + out + " holds the input " + in + "; choose another --out");
      }
    }
    if (!HadoopConf.remote(out) && Files.exists(Path.of(out)) && !Files.isDirectory(Path.of(out))) {
      throw new IllegalArgumentException("--out " + out + " is a file, expected a directory");
    }
    RunOutput ro = RunOutput.of(out, HadoopConf.current());
    List<String> held = ro.entries();
    if (held.isEmpty()) {
      return ro;
    }
    if (!overwrite) {
      throw new IllegalArgumentException("--out " + out + " already holds " + String.join(", ", held.subList(0, Math.min(6, held.size())))
          + (held.size() > 6 ? ", ..." : "") + "; pass --overwrite to replace it, or choose another --out");
    }
    ro.clear(null);
    return ro;
  }

  /** A location in one spelling: an absolute normalized path, or the URI as Hadoop normalizes it. */
  private static String normalized(String location) {
    return HadoopConf.remote(location) ? new org.apache.hadoop.fs.Path(location).toUri().normalize().toString()
        : Path.of(location).toAbsolutePath().normalize().toString();
  }
}
