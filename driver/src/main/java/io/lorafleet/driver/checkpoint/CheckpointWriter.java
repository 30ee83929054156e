package io.lorafleet.driver.checkpoint;

import java.util.ArrayDeque;
import java.util.Deque;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Writes checkpoints off the step loop, one at a time and in order, and never loses a failure: a
 * write that fails is retried once (after its temporary is removed), and a second failure is
 * reported by the next {@link #check()} or {@link #drain()} as an {@link OutputFailure} naming the
 * checkpoint and the cause, which stops the run.
 */
public final class CheckpointWriter implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(CheckpointWriter.class);

  /** One checkpoint's write and publish; run again as a whole on retry. */
  @FunctionalInterface
  public interface Write {
    void run() throws Exception;
  }

  private final ExecutorService ex = Executors.newSingleThreadExecutor(r -> {
    Thread t = new Thread(r, "lorafleet-checkpoint");
    t.setDaemon(true);
    return t;
  });
  private final Deque<Future<?>> pending = new ArrayDeque<>();

  public void submit(String what, Write w) {
    pending.add(ex.submit(() -> {
      try {
        w.run();
      } catch (Exception first) {
        LOG.warn("writing {} failed ({}); retrying once", what, first.toString());
        org.slf4j.LoggerFactory.getLogger(CheckpointWriter.class).warn("writing {} failed ({}); retrying once", what, first.toString());
        try {
          w.run();
        } catch (Exception second) {
          second.addSuppressed(first);
          throw new OutputFailure("could not write " + what + ": " + second, second);
        }
        LOG.warn("writing {} succeeded on retry", what);
      }
      return null;
    }));
  }

  /** Throws the failure of any finished write; does not wait for the others. */
  public void check() throws OutputFailure {
    while (!pending.isEmpty() && pending.peekFirst().isDone()) {
      get(pending.pollFirst());
    }
  }

  /** Waits for every submitted write; throws the first failure. */
  public void drain() throws OutputFailure {
    while (!pending.isEmpty()) {
      get(pending.pollFirst());
    }
  }

  private static void get(Future<?> f) throws OutputFailure {
    try {
      f.get();
    } catch (ExecutionException e) {
      if (e.getCause() instanceof OutputFailure o) {
        throw o;
      }
      throw new OutputFailure("checkpoint write failed: " + e.getCause(), e.getCause());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new OutputFailure("interrupted while waiting for a checkpoint write", e);
    }
  }

  @Override
  public void close() {
    ex.shutdown();
  }
}
