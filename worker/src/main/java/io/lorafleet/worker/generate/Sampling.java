package io.lorafleet.worker.generate;

/**
 * Decoding settings. temperature 0 means greedy; otherwise tokens are drawn from the top-p nucleus
 * of softmax(logits / temperature).
 */
public record Sampling(int maxNewTokens, double temperature, double topP, long seed) {
  public Sampling {
    if (maxNewTokens <= 0) {
      throw new IllegalArgumentException("max new tokens must be > 0 but found " + maxNewTokens);
    }
    if (temperature < 0) {
      throw new IllegalArgumentException("temperature must be >= 0 but found " + temperature);
    }
    if (!(topP > 0 && topP <= 1)) {
      throw new IllegalArgumentException("top-p must be in (0, 1] but found " + topP);
    }
  }

  public static Sampling greedy(int maxNewTokens) {
    return new Sampling(maxNewTokens, 0, 1, 0);
  }
}
