package io.lorafleet.driver.report;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;

/** A minimal SVG line chart (no plotting dependency): series of (x, y) points plus optional horizontal reference lines. */
public final class SvgPlot {
  /** A named series, drawn as a polyline with dots. */
  public record Series(String name, double[] x, double[] y, String color) {}

  /** A horizontal line at y, labelled (e.g. the averaged adapter's loss). */
  public record Level(String name, double y, String color) {}

  private static final int W = 720;
  private static final int H = 420;
  private static final int L = 70;
  private static final int R = 180;
  private static final int T = 40;
  private static final int B = 50;

  private SvgPlot() {}

  /** The plotted ranges: x over the series, y over the series and the levels near them, padded. */
  private record Range(double x0, double x1, double y0, double y1) {
    static Range of(List<Series> series, List<Level> levels) {
      double x0 = Double.POSITIVE_INFINITY;
      double x1 = Double.NEGATIVE_INFINITY;
      double y0 = Double.POSITIVE_INFINITY;
      double y1 = Double.NEGATIVE_INFINITY;
      for (Series s : series) {
        for (int i = 0; i < s.x().length; i++) {
          x0 = Math.min(x0, s.x()[i]);
          x1 = Math.max(x1, s.x()[i]);
          y0 = Math.min(y0, s.y()[i]);
          y1 = Math.max(y1, s.y()[i]);
        }
      }
      if (series.stream().allMatch(x -> x.x().length == 0)) {
        for (Level l : levels) {
          y0 = Math.min(y0, l.y());
          y1 = Math.max(y1, l.y());
        }
      }
      // Levels far outside the series' range (e.g. an untrained base) would flatten the curves: they
      // are listed in the legend with their value instead of drawn.
      double span = y1 - y0;
      double lo = y0 - span;
      double hi = y1 + span;
      if (!(x1 > x0)) {
        x1 = x0 + 1;
      }
      if (!(y1 > y0)) {
        y1 = y0 + 1;
      }
      double pad = (y1 - y0) * 0.05;
      boolean nonNegative = y0 >= 0;
      for (Level l : levels) {
        if (l.y() >= lo && l.y() <= hi) {
          y0 = Math.min(y0, l.y());
          y1 = Math.max(y1, l.y());
        }
      }
      return new Range(x0, x1, nonNegative ? Math.max(0, y0 - pad) : y0 - pad, y1 + pad);
    }

    double px(double x) {
      return L + (W - L - R) * (x - x0) / (x1 - x0);
    }

    double py(double y) {
      int ph = H - T - B;
      return T + ph - ph * (y - y0) / (y1 - y0);
    }
  }

  public static void write(Path file, String title, String xLabel, String yLabel, List<Series> series, List<Level> levels) throws IOException {
    Range r = Range.of(series, levels);
    StringBuilder sb = new StringBuilder();
    axes(sb, r, title, xLabel, yLabel);
    int legend = curves(sb, r, series, T + 10);
    levels(sb, r, levels, legend);
    sb.append("</svg>\n");
    Files.createDirectories(file.toAbsolutePath().getParent());
    Files.writeString(file, sb);
  }

  /** The frame, the title, the grid with its tick values, and the axis labels. */
  private static void axes(StringBuilder sb, Range r, String title, String xLabel, String yLabel) {
    sb.append(String.format(Locale.ROOT, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">%n", W, H));
    sb.append(String.format(Locale.ROOT, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>%n", W, H));
    sb.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"24\" font-size=\"15\">%s</text>%n", L, esc(title)));
    int pw = W - L - R;
    int ph = H - T - B;
    sb.append(String.format(Locale.ROOT, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#444\"/>%n", L, T, pw, ph));
    for (int k = 0; k <= 4; k++) {
      double yv = r.y0() + (r.y1() - r.y0()) * k / 4;
      double xv = r.x0() + (r.x1() - r.x0()) * k / 4;
      double py = T + ph - ph * k / 4.0;
      double px = L + pw * k / 4.0;
      sb.append(String.format(Locale.ROOT, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>%n", L, L + pw, py, py));
      sb.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>%n", L - 6, py + 4, fmt(yv)));
      sb.append(String.format(Locale.ROOT, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>%n", px, T + ph + 18, fmt(xv)));
    }
    sb.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>%n", L + pw / 2, H - 10, esc(xLabel)));
    sb.append(String.format(Locale.ROOT, "<text transform=\"translate(16 %d) rotate(-90)\" text-anchor=\"middle\">%s</text>%n", T + ph / 2, esc(yLabel)));
  }

  /** Each series as a line (with points when it has few) and its legend entry; returns where the next legend entry goes. */
  private static int curves(StringBuilder sb, Range r, List<Series> series, int legend) {
    int pw = W - L - R;
    for (Series s : series) {
      StringBuilder pts = new StringBuilder();
      for (int i = 0; i < s.x().length; i++) {
        double px = r.px(s.x()[i]);
        double py = r.py(s.y()[i]);
        pts.append(String.format(Locale.ROOT, "%.1f,%.1f ", px, py));
        if (s.x().length <= 60) {
          sb.append(String.format(Locale.ROOT, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>%n", px, py, s.color()));
        }
      }
      sb.append(String.format(Locale.ROOT, "<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"/>%n", pts.toString().trim(), s.color()));
      sb.append(String.format(Locale.ROOT, "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"3\"/><text x=\"%d\" y=\"%d\">%s</text>%n",
          L + pw + 10, L + pw + 30, legend, legend, s.color(), L + pw + 36, legend + 4, esc(s.name())));
      legend += 20;
    }
    return legend;
  }

  /** Each level as a dashed line and a legend entry, or, off the plotted range, as a legend entry with its value. */
  private static void levels(StringBuilder sb, Range r, List<Level> levels, int legend) {
    int pw = W - L - R;
    for (Level l : levels) {
      if (l.y() < r.y0() || l.y() > r.y1()) {
        sb.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\">%s = %s (off scale)</text>%n", L + pw + 10, legend + 4, esc(l.name()), fmt(l.y())));
        legend += 20;
        continue;
      }
      double py = r.py(l.y());
      sb.append(String.format(Locale.ROOT, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-dasharray=\"6 4\" stroke-width=\"2\"/>%n", L, L + pw, py, py, l.color()));
      sb.append(String.format(Locale.ROOT, "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-dasharray=\"6 4\" stroke-width=\"2\"/><text x=\"%d\" y=\"%d\">%s</text>%n",
          L + pw + 10, L + pw + 30, legend, legend, l.color(), L + pw + 36, legend + 4, esc(l.name())));
      legend += 20;
    }
  }

  private static String fmt(double v) {
    return Math.abs(v) >= 100 ? String.format(Locale.ROOT, "%.0f", v) : String.format(Locale.ROOT, "%.3g", v);
  }

  private static String esc(String s) {
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;");
  }
}
