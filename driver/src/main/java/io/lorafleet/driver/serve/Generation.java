package io.lorafleet.driver.serve;

import io.lorafleet.worker.generate.Generator;
import io.lorafleet.worker.generate.Sampling;
import java.time.Instant;
import java.util.Optional;
import java.util.SplittableRandom;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;

/**
 * One request in flight: its prompt, its adapter (empty: the base), how to pick tokens, when it
 * must end, and the events the scheduler sends to the HTTP thread that waits on it. The scheduler
 * owns the token state; the HTTP thread only reads {@link #events} and may {@link #cancel}.
 */
final class Generation {
  /** What the HTTP thread receives: text as it becomes final, then exactly one of Done or Failed. */
  sealed interface Event permits Delta, Done, Failed {}

  record Delta(String text) implements Event {}

  /** finishReason is "stop" (EOS or a stop string) or "length" (max_tokens, or the end of the context). */
  record Done(String text, String finishReason, int promptTokens, int completionTokens) implements Event {}

  record Failed(ApiError error) implements Event {}

  final long id;
  final String model;
  final Optional<AdapterRegistry.Entry> adapter;
  final int[] prompt;
  final Sampling sampling;
  final Optional<Integer> eos;
  final Instant deadline;
  /** The most tokens, prompt and completion together, this row may reach: it ends there with "length" whatever it asked. */
  final int context;
  final BlockingQueue<Event> events = new LinkedBlockingQueue<>();
  private final SplittableRandom rng;
  private final TextStream text;
  private int generated;
  private volatile boolean cancelled;
  private boolean ended;
  private boolean released;
  /** The last event (Done or Failed), held back until the scheduler has let go of what the request held: see {@link #deliverEnd}. */
  private Event last;

  Generation(long id, String model, Optional<AdapterRegistry.Entry> adapter, int[] prompt, Sampling sampling, Optional<Integer> eos, TextStream text,
      Instant deadline, int context) {
    if (prompt.length >= context) {
      throw new IllegalArgumentException("a prompt of " + prompt.length + " tokens leaves nothing to generate in a context of " + context);
    }
    this.id = id;
    this.model = model;
    this.adapter = adapter;
    this.prompt = prompt;
    this.sampling = sampling;
    this.eos = eos;
    this.text = text;
    this.deadline = deadline;
    this.context = context;
    this.rng = new SplittableRandom(sampling.seed()); // as Generator.generate draws, so a seeded request repeats offline
  }

  /** The adapter group of the batch (−1: the base). */
  int group() {
    return adapter.map(AdapterRegistry.Entry::group).orElse(-1);
  }

  /**
   * The KV-cache positions this request may come to hold: its prompt and every token it may
   * generate ({@link io.lorafleet.worker.generate.Sampling#maxNewTokens} is within the context).
   */
  long reservation() {
    return (long) prompt.length + Math.min(sampling.maxNewTokens(), context - prompt.length);
  }

  /**
   * Picks the next token from its logits, sends the text it completes and returns it, or empty when
   * the generation ended with it (EOS, a stop string, max_tokens or the end of the context).
   */
  Optional<Integer> next(float[] logits) {
    int id = Generator.pick(logits, sampling, rng);
    generated++;
    boolean isEos = eos.isPresent() && id == eos.get();
    String delta = text.add(id);
    if (!delta.isEmpty()) {
      events.add(new Delta(delta));
    }
    if (isEos || text.stopped()) {
      end("stop");
      return Optional.empty();
    }
    if (generated >= sampling.maxNewTokens() || Generator.atContextEnd(context, prompt.length, generated)) {
      end("length");
      return Optional.empty();
    }
    return Optional.of(id);
  }

  private void end(String reason) {
    String rest = text.finish();
    if (!rest.isEmpty()) {
      events.add(new Delta(rest));
    }
    ended = true;
    last = new Done(text.text(), reason, prompt.length, generated);
  }

  /** Ends the generation with an error (timeout, shutdown, a failed step); no-op once ended. */
  void fail(ApiError e) {
    if (!ended) {
      ended = true;
      last = new Failed(e);
    }
  }

  /**
   * Sends the last event (Done or Failed), once, after the scheduler let go of the request's KV
   * reservation and adapter: a client that has its response can send the next request at once,
   * and the budget has room for it.
   */
  void deliverEnd() {
    if (last != null) {
      events.add(last);
      last = null;
    }
  }

  boolean ended() {
    return ended;
  }

  /**
   * Lets go of the adapter, once per request whoever ends it (the scheduler, or a refused
   * submission); true the first time, when the caller lets go of what else it held for it.
   */
  boolean release(AdapterRegistry registry) {
    if (released) {
      return false;
    }
    released = true;
    adapter.ifPresent(registry::release);
    return true;
  }

  /** Whether the scheduler must drop this request now: its client went away or its time is up. */
  boolean over(Instant now) {
    return cancelled || now.isAfter(deadline);
  }

  /** The client went away; the scheduler drops the row at its next step. */
  void cancel() {
    cancelled = true;
  }

  boolean cancelled() {
    return cancelled;
  }
}
