package io.lorafleet.driver.serve;

import io.lorafleet.worker.generate.DecodeBatch;
import io.lorafleet.worker.model.LanguageModel;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Continuous batching on one thread, the only one that touches the model. Each iteration it ends
 * what timed out or was cancelled, admits waiting requests up to {@code maxBatch} rows (their
 * prompts are prefilled as a batch and join the running {@link DecodeBatch}), and runs one decode
 * step for every row, whatever its adapter. Requests wait in a bounded queue; a full queue refuses
 * with 429, a draining server with 503.
 *
 * <p>Memory is bounded by the KV budget {@code kvTokens}, never by what requests ask. Each request
 * reserves its prompt plus the tokens it may generate ({@link Generation#reservation}), which fit
 * the context. A request whose reservation would take the reserved total of the running and
 * waiting requests past the budget gets 429. And a waiting request joins the batch only when the
 * cache then still holds at most {@code kvTokens} positions, counting the left padding: rows times
 * the longest reservation among them (the cache's length never exceeds it, since every row ends at
 * its reservation). Requests join in arrival order, so none waits forever behind later ones.
 *
 * <p>{@link #pause()} holds the loop before its next iteration, so that tests fill the queue or
 * time requests out deterministically, with a clock they move themselves.
 */
public final class Scheduler implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(Scheduler.class);

  private final LanguageModel model;
  private final int maxBatch;
  private final int maxQueue;
  private final long kvTokens;
  private final Clock clock;
  private final AdapterRegistry adapters;
  private final ReentrantLock lock = new ReentrantLock();
  private final Condition changed = lock.newCondition();
  private final ArrayDeque<Generation> waiting = new ArrayDeque<>();
  private final Thread thread;
  private boolean paused;
  private boolean draining;
  private boolean stopped;
  private int active;
  private int budget = -1;
  /** KV positions reserved by the requests running and waiting (at most kvTokens). */
  private long reserved;
  private long peakCacheTokens;
  private long cacheTokens;
  private volatile long iterations;
  private long steps;
  private long rowsStepped;
  private long tokens;
  private long mixedSteps;
  private long lateJoins;
  private int widest;

  public Scheduler(LanguageModel model, AdapterRegistry adapters, int maxBatch, int maxQueue, long kvTokens, Clock clock) {
    this.model = model;
    this.adapters = adapters;
    this.maxBatch = maxBatch;
    this.maxQueue = maxQueue;
    this.kvTokens = kvTokens;
    this.clock = clock;
    this.thread = new Thread(this::run, "lorafleet-scheduler");
    this.thread.setDaemon(true);
  }

  public void start() {
    thread.start();
  }

  /** Queues a request: 429 when the queue is full or its reservation passes the KV budget, 503 when the server is draining. */
  void submit(Generation g) {
    lock.lock();
    try {
      if (draining || stopped) {
        throw new ApiError(503, "service_unavailable", Optional.empty(), "the server is shutting down and takes no new requests");
      }
      if (waiting.size() >= maxQueue) {
        throw ApiError.busy("the queue is full (" + maxQueue + " waiting, --max-queue); retry later");
      }
      if (g.reservation() > kvTokens - reserved) {
        throw ApiError.busy("the requests running and waiting hold " + reserved + " of the server's " + kvTokens + " KV-cache tokens "
            + "(--max-kv-tokens) and this one needs " + g.reservation() + " (" + g.prompt.length + " in the prompt, "
            + (g.reservation() - g.prompt.length) + " to generate); retry later, or ask for fewer tokens");
      }
      reserved += g.reservation();
      waiting.add(g);
      changed.signalAll();
    } finally {
      lock.unlock();
    }
  }

  /** Holds the loop before its next iteration (a test hook). */
  public void pause() {
    locked(() -> {
      paused = true;
      return null;
    });
  }

  public void resume() {
    resumeFor(-1);
  }

  /** Resumes for {@code iterations} iterations of the loop, then pauses again (−1: for good); a test hook. */
  public void resumeFor(int iterations) {
    locked(() -> {
      paused = false;
      budget = iterations;
      changed.signalAll();
      return null;
    });
  }

  /** Iterations of the loop run so far (each admits and steps once). */
  public long iterations() {
    return iterations;
  }

  /** Whether a shutdown has begun. */
  public boolean draining() {
    return locked(() -> draining);
  }

  /**
   * What continuous batching did so far: decode steps; rows decoded over all steps; steps whose
   * batch held rows of more than one adapter (the base counting as one); requests that joined a
   * batch already decoding; the most rows in one step; tokens generated (the first ones, from
   * prefill, too); the most KV-cache positions (rows times the cache's length, padding included)
   * held after any iteration.
   */
  public record Stats(long steps, long rows, long mixedSteps, long lateJoins, int widest, long tokens, long peakCacheTokens) {}

  public Stats stats() {
    return locked(() -> new Stats(steps, rowsStepped, mixedSteps, lateJoins, widest, tokens, peakCacheTokens));
  }

  /** KV positions reserved now by the requests running and waiting. */
  public long reservedKvTokens() {
    return locked(() -> reserved);
  }

  /** KV positions the running batch's cache holds now, padding included. */
  public long cacheTokens() {
    return locked(() -> cacheTokens);
  }

  /** The KV budget (--max-kv-tokens, or its default). */
  public long kvTokens() {
    return kvTokens;
  }

  /** Requests waiting for a row. */
  public int queued() {
    return locked(() -> waiting.size());
  }

  /** Requests being decoded. */
  public int active() {
    return locked(() -> active);
  }

  /** Decode steps run so far. */
  public long steps() {
    return stats().steps();
  }

  /** Nudges the loop, e.g. after a request was cancelled. */
  void wake() {
    locked(() -> {
      changed.signalAll();
      return null;
    });
  }

  /**
   * Takes no new requests and waits until every accepted one (queued or decoding) has ended, for at
   * most {@code timeout}; returns whether all did.
   */
  public boolean drain(Duration timeout) throws InterruptedException {
    long until = System.nanoTime() + timeout.toNanos();
    lock.lock();
    try {
      draining = true;
      changed.signalAll();
      while (!waiting.isEmpty() || active > 0) {
        long left = until - System.nanoTime();
        if (left <= 0) {
          return false;
        }
        changed.awaitNanos(left);
      }
      return true;
    } finally {
      lock.unlock();
    }
  }

  /** Stops the loop; requests still queued or decoding end with 503. */
  @Override
  public void close() {
    locked(() -> {
      stopped = true;
      draining = true;
      changed.signalAll();
      return null;
    });
    try {
      thread.join(TimeUnit.MINUTES.toMillis(1));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /**
   * The scheduler's loop: admit what fits, run one iteration (a decode step for the running rows,
   * then the newcomers' prefill), record what it held. A failed iteration fails its rows, not the
   * server; stopping ends every row still held with 503.
   */
  private void run() {
    Map<Long, Generation> rows = new HashMap<>();
    Map<Long, Integer> next = new HashMap<>();
    DecodeBatch batch = new DecodeBatch(model);
    try {
      while (true) {
        Optional<List<Generation>> admitted = admit(rows);
        if (admitted.isEmpty()) {
          break;
        }
        long held = 0;
        try {
          held = iterate(batch, rows, next, admitted.get());
        } catch (RuntimeException e) {
          batch = fail(batch, rows, next, admitted.get(), e);
        }
        record(rows, batch, held);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } finally {
      shutDown(rows, batch);
    }
  }

  /**
   * Under the lock: waits for work, drops waiting requests past their deadline, and takes from the
   * queue what fits the batch and the KV budget. Empty once the scheduler is stopped.
   */
  private Optional<List<Generation>> admit(Map<Long, Generation> rows) throws InterruptedException {
    List<Generation> admitted = new ArrayList<>();
    lock.lock();
    try {
      while (!stopped && (paused || waiting.isEmpty() && rows.isEmpty())) {
        changed.await();
      }
      if (stopped) {
        return Optional.empty();
      }
      if (budget > 0 && --budget == 0) {
        paused = true;
      }
      Instant now = clock.instant();
      for (Iterator<Generation> it = waiting.iterator(); it.hasNext();) {
        Generation g = it.next();
        if (g.over(now)) {
          it.remove();
          end(g, timedOut(g, now));
        }
      }
      while (rows.size() + admitted.size() < maxBatch && !waiting.isEmpty() && fitsCache(rows.values(), admitted, waiting.peek())) {
        admitted.add(waiting.poll());
      }
      active = rows.size() + admitted.size();
      changed.signalAll();
      return Optional.of(admitted);
    } finally {
      lock.unlock();
    }
  }

  /**
   * One iteration outside the lock: rows past their deadline leave, the running rows decode one
   * token, the newcomers join with their prefill, and finished rows leave. Returns the most KV cache
   * it held: newcomers in, finished rows not yet out.
   */
  private long iterate(DecodeBatch batch, Map<Long, Generation> rows, Map<Long, Integer> next, List<Generation> admitted) {
    Instant now = clock.instant();
    List<Long> gone = new ArrayList<>();
    for (Generation g : rows.values()) {
      if (g.over(now)) {
        gone.add(g.id);
        end(g, timedOut(g, now));
      }
    }
    leave(batch, rows, next, gone);
    Map<Long, float[]> logits = new HashMap<>();
    if (!next.isEmpty()) {
      logits.putAll(batch.step(next));
      count(next.keySet().stream().map(rows::get).toList(), admitted.size());
    }
    logits.putAll(batch.join(admitted.stream()
        .map(g -> new DecodeBatch.Join(g.id, g.prompt, g.group(), g.adapter.map(AdapterRegistry.Entry::delta))).toList()));
    admitted.forEach(g -> rows.put(g.id, g));
    long held = (long) batch.size() * batch.cacheLength();
    next.clear();
    locked(() -> tokens += logits.size());
    List<Long> done = new ArrayList<>();
    logits.forEach((id, l) -> {
      Generation g = rows.get(id);
      Optional<Integer> t = g.next(l);
      if (t.isPresent()) {
        next.put(id, t.get());
      } else {
        done.add(id);
        end(g, Optional.empty());
      }
    });
    leave(batch, rows, next, done);
    return held;
  }

  /** A failed iteration: its rows (running and newly admitted) end with 500; returns a fresh batch. */
  private DecodeBatch fail(DecodeBatch batch, Map<Long, Generation> rows, Map<Long, Integer> next, List<Generation> admitted, RuntimeException e) {
    LOG.error("a decode step failed; failing its {} requests", rows.size() + admitted.size(), e);
    ApiError err = ApiError.server("a decode step");
    admitted.stream().filter(g -> !rows.containsKey(g.id)).forEach(g -> end(g, Optional.of(err)));
    rows.values().forEach(g -> end(g, Optional.of(err)));
    rows.clear();
    next.clear();
    batch.close();
    return new DecodeBatch(model);
  }

  /** The iteration's counters, read by stats() and the metrics: rows running, KV cache held now and at most. */
  private void record(Map<Long, Generation> rows, DecodeBatch batch, long held) {
    lock.lock();
    try {
      active = rows.size();
      cacheTokens = (long) batch.size() * batch.cacheLength();
      peakCacheTokens = Math.max(peakCacheTokens, Math.max(held, cacheTokens));
      iterations++;
      changed.signalAll();
    } finally {
      lock.unlock();
    }
  }

  /** The loop ended: every request still running or queued ends with 503, and the batch's cache is freed. */
  private void shutDown(Map<Long, Generation> rows, DecodeBatch batch) {
    ApiError down = new ApiError(503, "service_unavailable", Optional.empty(), "the server stopped before the request ended");
    rows.values().forEach(g -> end(g, Optional.of(down)));
    lock.lock();
    try {
      waiting.forEach(g -> end(g, Optional.of(down)));
      waiting.clear();
      active = 0;
      cacheTokens = 0;
      changed.signalAll();
    } finally {
      lock.unlock();
    }
    batch.close();
  }

  private <T> T locked(java.util.function.Supplier<T> f) {
    lock.lock();
    try {
      return f.get();
    } finally {
      lock.unlock();
    }
  }

  private void count(List<Generation> stepped, int joined) {
    lock.lock();
    try {
      steps++;
      rowsStepped += stepped.size();
      mixedSteps += stepped.stream().mapToInt(Generation::group).distinct().count() > 1 ? 1 : 0;
      lateJoins += joined;
      widest = Math.max(widest, stepped.size());
    } finally {
      lock.unlock();
    }
  }

  /**
   * Whether {@code next} may join the running rows and those admitted this iteration: the cache
   * then holds rows times the longest reservation positions at most, and that must stay within the
   * KV budget. A lone request always fits (its reservation is within the context, which the budget
   * holds).
   */
  private boolean fitsCache(java.util.Collection<Generation> running, List<Generation> admitted, Generation next) {
    long longest = next.reservation();
    for (Generation g : running) {
      longest = Math.max(longest, g.reservation());
    }
    for (Generation g : admitted) {
      longest = Math.max(longest, g.reservation());
    }
    return (running.size() + admitted.size() + 1) * longest <= kvTokens;
  }

  private static Optional<ApiError> timedOut(Generation g, Instant now) {
    return g.cancelled() ? Optional.empty() : Optional.of(new ApiError(408, "timeout_error", Optional.empty(),
        "the request did not finish within its time (--request-timeout); it ended at " + g.deadline + ", now " + now));
  }

  private static void leave(DecodeBatch batch, Map<Long, Generation> rows, Map<Long, Integer> next, List<Long> ids) {
    if (!ids.isEmpty()) {
      batch.leave(ids);
      ids.forEach(id -> {
        rows.remove(id);
        next.remove(id);
      });
    }
  }

  /** Ends a request (with an error when given) and lets go of its adapter and its KV reservation. */
  private void end(Generation g, Optional<ApiError> error) {
    error.ifPresent(g::fail);
    if (!g.ended()) {
      g.fail(new ApiError(499, "cancelled", Optional.empty(), "the client closed the connection before the response"));
    }
    if (g.release(adapters)) {
      locked(() -> reserved -= g.reservation());
    }
    g.deliverEnd();
  }
}
