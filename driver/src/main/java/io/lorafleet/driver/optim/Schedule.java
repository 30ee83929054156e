package io.lorafleet.driver.optim;

/** Learning rate at a step: linear warmup, then constant, linear or cosine decay to zero at the last step. */
public record Schedule(String kind, double peak, int warmup, int total) {
  public Schedule {
    if (!kind.equals("constant") && !kind.equals("linear") && !kind.equals("cosine")) {
      throw new IllegalArgumentException("lr schedule must be constant, linear or cosine but found '" + kind + "'");
    }
    if (!(peak > 0)) {
      throw new IllegalArgumentException("learning rate must be > 0 but found " + peak);
    }
    if (warmup < 0) {
      throw new IllegalArgumentException("warmup steps must be >= 0 but found " + warmup);
    }
  }

  /** Learning rate for 0-based {@code step}. */
  public double lr(int step) {
    if (step < warmup) {
      return peak * (step + 1) / (warmup + 1);
    }
    double progress = total <= warmup ? 0 : (double) (step - warmup) / Math.max(1, total - warmup);
    return switch (kind) {
      case "linear" -> peak * Math.max(0, 1 - progress);
      case "cosine" -> peak * 0.5 * (1 + Math.cos(Math.PI * Math.min(1, progress)));
      default -> peak;
    };
  }
}
