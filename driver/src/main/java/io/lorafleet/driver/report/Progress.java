package io.lorafleet.driver.report;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What a command says while it works (stages reached, steps done, runs resumed), as slf4j messages
 * of the logger {@value #LOGGER}: the launcher's logging prints them as plain lines on stdout and
 * keeps them, timestamped, in the log file. A command's results (tables, JSON, paths written) are
 * its output and go to stdout directly.
 */
public final class Progress {
  public static final String LOGGER = "lorafleet.progress";
  private static final Logger LOG = LoggerFactory.getLogger(LOGGER);

  private Progress() {}

  public static void say(String line) {
    LOG.info(line);
  }
}
