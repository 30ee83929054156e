package io.lorafleet.driver.serve;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.SelectableChannel;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.util.Optional;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicLong;
import org.eclipse.jetty.io.EndPoint;
import org.eclipse.jetty.io.SelectableChannelEndPoint;
import org.eclipse.jetty.server.Request;
import org.eclipse.jetty.util.BufferUtil;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Notices a client that closes its connection while its generation is still waiting or decoding,
 * streamed or not, as soon as the close arrives, instead of at the next write (a stream) or never
 * (a whole response, which writes nothing until the end).
 *
 * <p>Jetty's HTTP/1.1 connection does not read while a request is being handled, so nothing in it
 * sees the close. Each watched connection's channel is therefore registered for reads with one
 * selector of this class's own as well (a channel may be registered with several selectors; Jetty
 * asks its own for nothing meanwhile). When the channel becomes readable, the watch reads from it:
 * end of stream or a reset means the client is gone, and {@code onClose} runs once. Bytes that do
 * arrive are a pipelined next request, which this server does not take: the watch keeps nothing of
 * them, and the response then closes the connection, as RFC 9112 allows, so the client sends it
 * again. A watch is closed before the response completes, so it never reads what Jetty would.
 */
final class DisconnectWatch implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(DisconnectWatch.class);

  /** One watched request; closing it stops the watch (idempotent). */
  static final class Watch implements AutoCloseable {
    private final EndPoint endPoint;
    private final Runnable onClose;
    private SelectionKey key;
    private boolean closed;
    private boolean pipelined;

    private Watch(EndPoint endPoint, Runnable onClose) {
      this.endPoint = endPoint;
      this.onClose = onClose;
    }

    /** Whether the client sent bytes after its request (the response must close the connection). */
    synchronized boolean pipelined() {
      return pipelined;
    }

    /** Reads what made the channel readable; true when the client is gone. */
    private boolean readable() {
      synchronized (this) {
        if (closed) {
          return false;
        }
        ByteBuffer sink = BufferUtil.allocate(512); // empty in Jetty's flush mode, as EndPoint.fill expects
        int n;
        try {
          n = endPoint.fill(sink);
        } catch (IOException e) {
          n = -1; // a reset: the client is gone all the same
        }
        if (n > 0) {
          pipelined = true;
          return false;
        }
        if (n == 0) {
          return false;
        }
        close();
      }
      onClose.run();
      return true;
    }

    @Override
    public synchronized void close() {
      closed = true;
      if (key != null) {
        key.cancel();
      }
    }
  }

  private final Selector selector;
  private final Thread thread;
  private final ConcurrentLinkedQueue<Watch> pending = new ConcurrentLinkedQueue<>();
  private final AtomicLong disconnects = new AtomicLong();
  private volatile boolean stopped;

  DisconnectWatch() throws IOException {
    this.selector = Selector.open();
    this.thread = new Thread(this::run, "lorafleet-disconnect-watch");
    this.thread.setDaemon(true);
    this.thread.start();
  }

  /**
   * Watches the request's connection until the returned watch is closed; {@code onClose} runs on
   * this class's thread when the client goes away first. Empty for a connection that is not a
   * plain socket (none here: serve speaks HTTP/1.1 over TCP only).
   */
  Optional<Watch> watch(Request req, Runnable onClose) {
    EndPoint ep = req.getConnectionMetaData().getConnection().getEndPoint();
    if (!(ep instanceof SelectableChannelEndPoint)) {
      return Optional.empty();
    }
    Watch w = new Watch(ep, () -> {
      onClose.run();
      disconnects.incrementAndGet();
    });
    pending.add(w);
    selector.wakeup();
    return Optional.of(w);
  }

  /** Clients noticed gone while their request was watched (what tests wait on instead of time). */
  long disconnects() {
    return disconnects.get();
  }

  private void run() {
    try {
      while (!stopped) {
        selector.select();
        for (Watch w = pending.poll(); w != null; w = pending.poll()) {
          register(w);
        }
        for (SelectionKey k : selector.selectedKeys()) {
          if (k.isValid() && k.isReadable()) {
            ((Watch) k.attachment()).readable();
          }
        }
        selector.selectedKeys().clear();
      }
    } catch (IOException | RuntimeException e) {
      LOG.error("the disconnect watch stopped; clients that go away are now noticed at their next write only", e);
    }
  }

  private void register(Watch w) {
    boolean gone = false;
    synchronized (w) {
      if (w.closed) {
        return;
      }
      SelectableChannel ch = ((SelectableChannelEndPoint) w.endPoint).getChannel();
      try {
        w.key = ch.register(selector, SelectionKey.OP_READ, w);
      } catch (ClosedChannelException e) {
        w.closed = true; // closed before it was registered: the client is already gone
        gone = true;
      }
    }
    if (gone) {
      w.onClose.run();
    }
  }

  @Override
  public void close() {
    stopped = true;
    selector.wakeup();
    try {
      thread.join(10_000);
      selector.close();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (IOException e) {
      LOG.warn("closing the disconnect watch's selector: {}", e.toString());
    }
  }
}
