package io.lorafleet.driver.checkpoint;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.net.InetAddress;
import java.time.Instant;
import java.util.Optional;
import java.util.UUID;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The lock that keeps two drivers from writing one run: {@value #FILE} in the output, created
 * exclusively, recording its owner (host, process id, process start, a random id) and a heartbeat
 * the owner refreshes every {@code staleMs / 4}. A lock is stale when its owner's process is gone
 * from this host (or the pid now belongs to a process started at another time), or its heartbeat is
 * older than {@code staleMs}; only --resume and --overwrite break a stale lock, with a warning. A
 * live lock is never broken.
 */
public final class RunLock implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(RunLock.class);
  public static final String FILE = ".lorafleet.lock";
  /** A heartbeat older than this marks the lock stale (its owner refreshes it every quarter of that). */
  public static final long STALE_AFTER_MS = 300_000;
  private static final ObjectMapper JSON = new ObjectMapper();

  private final RunOutput out;
  private final String id = UUID.randomUUID().toString();
  private final ScheduledExecutorService heartbeat;

  private RunLock(RunOutput out) {
    this.out = out;
    this.heartbeat = null;
  }

  private RunLock(RunOutput out, long staleMs) {
    this.out = out;
    this.heartbeat = Executors.newSingleThreadScheduledExecutor(r -> {
      Thread t = new Thread(r, "lorafleet-lock-heartbeat");
      t.setDaemon(true);
      return t;
    });
    long every = Math.max(1_000, staleMs / 4);
    heartbeat.scheduleAtFixedRate(this::beat, every, every, TimeUnit.MILLISECONDS);
  }

  /**
   * Takes the lock of {@code out}.
   *
   * @param breakStale break a stale lock (for --resume and --overwrite) instead of refusing
   * @throws IllegalStateException when another live driver holds it, or a stale lock is left and
   *     {@code breakStale} is false
   */
  public static RunLock acquire(RunOutput out, boolean breakStale, long staleMs) throws IOException {
    if (!out.refusesSecondCreate()) {
      throw new IllegalStateException(out.uri() + " is on a store that does not refuse a second exclusive create of one file (it ignores "
          + "If-None-Match: *), so a run lock there would be a check-then-write race; pass --no-lock to write it without one, and make sure "
          + "that a single driver writes it");
    }
    for (int tries = 0; tries < 2; tries++) {
      if (out.createExclusive(FILE, owner(null).toString().getBytes(java.nio.charset.StandardCharsets.UTF_8))) {
        RunLock lock = new RunLock(out, staleMs);
        lock.write();
        return lock;
      }
      Optional<byte[]> held = out.read(FILE);
      if (held.isEmpty()) {
        continue; // released between our two looks
      }
      JsonNode o;
      try {
        o = JSON.readTree(held.get());
      } catch (IOException torn) {
        o = JSON.createObjectNode(); // a lock torn by a crash: its owner is unknown and so stale
      }
      Optional<String> stale = staleness(o, staleMs);
      String who = "pid " + o.path("pid").asText("?") + " on " + o.path("host").asText("?") + " since " + o.path("started").asText("?");
      if (stale.isEmpty()) {
        throw new IllegalStateException(out.uri() + " is locked by a running driver (" + who + ", heartbeat " + o.path("heartbeat").asText("?")
            + "); two drivers never write one output. Wait for it to finish, or stop it first");
      }
      if (!breakStale) {
        throw new IllegalStateException(out.uri() + " holds a stale lock (" + who + ": " + stale.get() + "); pass --resume to continue that run or "
            + "--overwrite to replace it");
      }
      LOG.warn("breaking the stale lock of {} ({}: {})", out.uri(), who, stale.get());
      org.slf4j.LoggerFactory.getLogger(RunLock.class).warn("breaking the stale lock of {} ({}: {})", out.uri(), who, stale.get());
      out.delete(FILE);
    }
    throw new IllegalStateException(out.uri() + ": another driver took the lock while this one broke a stale one");
  }

  /** No lock (--no-lock): the output is written as if locked, and a single writer is the user's to ensure. */
  public static RunLock none(RunOutput out) {
    LOG.warn("{}: running without a run lock (--no-lock); a second driver writing it would not be refused", out.uri());
    return new RunLock(out);
  }

  /** Why the lock described by {@code o} is stale, or empty while its owner looks alive. */
  static Optional<String> staleness(JsonNode o, long staleMs) {
    long beat = o.path("heartbeat_ms").asLong(0);
    long age = System.currentTimeMillis() - beat;
    if (o.path("host").asText("").equals(host())) {
      long pid = o.path("pid").asLong(-1);
      Optional<ProcessHandle> p = ProcessHandle.of(pid);
      String started = p.flatMap(h -> h.info().startInstant()).map(Instant::toString).orElse("");
      if (p.isEmpty() || !p.get().isAlive() || !started.equals(o.path("process_started").asText())) {
        return Optional.of("its process " + pid + " is gone from this host");
      }
    }
    if (age > staleMs) {
      return Optional.of("no heartbeat for " + age / 1000 + " s, more than " + staleMs / 1000 + " s");
    }
    return Optional.empty();
  }

  private static String host() {
    try {
      return InetAddress.getLocalHost().getHostName();
    } catch (IOException e) {
      return "unknown-host";
    }
  }

  private static ObjectNode owner(String id) {
    ObjectNode o = JSON.createObjectNode();
    ProcessHandle me = ProcessHandle.current();
    o.put("host", host());
    o.put("pid", me.pid());
    o.put("process_started", me.info().startInstant().map(Instant::toString).orElse(""));
    o.put("started", Instant.now().toString());
    o.put("heartbeat", Instant.now().toString());
    o.put("heartbeat_ms", System.currentTimeMillis());
    if (id != null) {
      o.put("id", id);
    }
    return o;
  }

  private void write() throws IOException {
    out.replace(FILE, JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(owner(id)));
  }

  private void beat() {
    try {
      if (ours()) {
        write();
      }
    } catch (IOException e) {
      LOG.warn("could not refresh the lock of {}: {}", out.uri(), e.getMessage());
    }
  }

  private boolean ours() throws IOException {
    Optional<byte[]> b = out.read(FILE);
    return b.isPresent() && JSON.readTree(b.get()).path("id").asText("").equals(id);
  }

  @Override
  public void close() throws IOException {
    if (heartbeat == null) {
      return;
    }
    heartbeat.shutdownNow();
    if (ours()) {
      out.delete(FILE);
    }
  }
}
