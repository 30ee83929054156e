package io.lorafleet.driver.allreduce;

import java.io.IOException;
import java.net.BindException;
import java.net.InetAddress;
import java.net.ServerSocket;

/**
 * The ports the gradient channel may listen on: any free port (the default), or the first free one
 * of "lo-hi" for clusters whose firewall opens only a range to the driver.
 */
public record PortRange(int lo, int hi) {
  public static final PortRange ANY = new PortRange(0, 0);

  public PortRange {
    if (lo < 0 || hi > 65535 || lo > hi || (lo == 0) != (hi == 0)) {
      throw new IllegalArgumentException("--gradient-ports must be LO-HI with 1 <= LO <= HI <= 65535 but found " + lo + "-" + hi);
    }
  }

  /** "" (any port), "P" or "LO-HI". */
  public static PortRange parse(String spec) {
    String s = spec.trim();
    if (s.isEmpty()) {
      return ANY;
    }
    String[] p = s.split("-", -1);
    try {
      return p.length == 1 ? new PortRange(Integer.parseInt(p[0]), Integer.parseInt(p[0]))
          : p.length == 2 ? new PortRange(Integer.parseInt(p[0].trim()), Integer.parseInt(p[1].trim())) : fail(spec);
    } catch (NumberFormatException e) {
      return fail(spec);
    }
  }

  private static PortRange fail(String spec) {
    throw new IllegalArgumentException("--gradient-ports must be a port or LO-HI (e.g. 40000-40100) but found '" + spec + "'");
  }

  /** A listening socket on {@code address}, on the first free port of the range. */
  ServerSocket bind(InetAddress address) throws IOException {
    if (this.equals(ANY)) {
      return new ServerSocket(0, 64, address);
    }
    for (int port = lo; port <= hi; port++) {
      try {
        return new ServerSocket(port, 64, address);
      } catch (BindException busy) {
        // taken: try the next one
      }
    }
    throw new BindException("no free port in --gradient-ports " + lo + "-" + hi + " on " + address.getHostAddress());
  }
}
