package io.lorafleet.driver.train;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A hostile or broken peer of the gradient channel, without the job secret: it connects again and
 * again to one port and, in turn, trickles bytes and holds the connection, sends garbage, sends a
 * well-formed hello with a wrong MAC, replays the server's own hello back at it, and sends a push
 * frame (claiming 2 GB) without any handshake. Bounded: it stops when told, after 100,000
 * connection attempts, or after 5 minutes, and only ever connects to the loopback address given.
 */
final class Hostile implements Runnable {
  private static final int MAGIC = 0x4c4f5241;
  private static final int VERSION = 3;
  private final String host;
  private final int port;
  private volatile boolean stop;
  private final AtomicInteger reached = new AtomicInteger();
  private final List<String> log = new ArrayList<>();

  Hostile(String host, int port) {
    this.host = host;
    this.port = port;
  }

  void stop() {
    stop = true;
  }

  /** Connections on which the server's hello was read: attacks that reached the server. */
  int reachedTheServer() {
    return reached.get();
  }

  synchronized String log() {
    return String.join("; ", log.subList(Math.max(0, log.size() - 20), log.size()));
  }

  @Override
  public void run() {
    Random rnd = new Random(1);
    long deadline = System.currentTimeMillis() + 300_000;
    for (int i = 0; i < 100_000 && !stop && System.currentTimeMillis() < deadline; i++) {
      try (Socket s = new Socket()) {
        s.connect(new InetSocketAddress(host, port), 200);
        s.setSoTimeout(2_000);
        DataInputStream in = new DataInputStream(s.getInputStream());
        DataOutputStream out = new DataOutputStream(s.getOutputStream());
        byte[] hello = new byte[24];
        in.readFully(hello);
        if (ByteBuffer.wrap(hello).getInt() != MAGIC) {
          continue;
        }
        reached.incrementAndGet();
        switch (i % 5) {
          case 0 -> { // slow bytes: one byte, then hold the connection open
            out.write(MAGIC >>> 24);
            out.flush();
            Thread.sleep(300);
          }
          case 1 -> { // garbage
            byte[] junk = new byte[64];
            rnd.nextBytes(junk);
            out.write(junk);
          }
          case 2 -> { // a well-formed hello with a wrong MAC
            ByteBuffer b = ByteBuffer.allocate(16 + 16 + 32);
            b.putInt(MAGIC).putInt(VERSION).putInt(0).putInt(1);
            out.write(b.array());
          }
          case 3 -> out.write(hello); // the server's own hello, replayed at it
          default -> { // a push frame without a handshake, claiming 2 GB
            out.writeInt(4);
            out.writeInt(Integer.MAX_VALUE);
            out.write(new byte[32]);
          }
        }
        out.flush();
        int answer = in.read();
        synchronized (this) {
          log.add("attack " + i % 5 + ": first byte of answer " + answer);
        }
      } catch (IOException e) {
        synchronized (this) {
          if (log.size() < 1000) {
            log.add(e.getClass().getSimpleName());
          }
        }
        try {
          Thread.sleep(1);
        } catch (InterruptedException ie) {
          return;
        }
      } catch (InterruptedException e) {
        return;
      }
    }
  }
}
