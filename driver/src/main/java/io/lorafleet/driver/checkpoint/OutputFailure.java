package io.lorafleet.driver.checkpoint;

import java.io.IOException;

/**
 * Writing the run's own output failed (a full disk, a permission error, a failed publish). Unlike a
 * lost worker this is never retried by relaunching the stage: the run stops and says where and why,
 * rather than training on without its checkpoints.
 */
public final class OutputFailure extends IOException {
  public OutputFailure(String message, Throwable cause) {
    super(message, cause);
  }
}
