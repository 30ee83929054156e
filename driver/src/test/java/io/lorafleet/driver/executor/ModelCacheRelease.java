package io.lorafleet.driver.executor;

import io.lorafleet.worker.NativeLeakCheck;

/** The bases the executors' model cache keeps loaded across test classes, closed before the harness counts native arrays. */
public final class ModelCacheRelease implements NativeLeakCheck.Release {
  @Override
  public void release() {
    ModelCache.clear();
  }
}
