package io.lorafleet.driver.executor;

import io.lorafleet.datasets.arrow.Example;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.LanguageModel;
import java.io.Serializable;
import java.util.List;

/**
 * How a worker scores the candidates of a run's evaluation (the live adapter and the running
 * averages) on one slot of the validation rows. The driver hands in the eval package's scorer, so
 * that a run chooses by the numbers eval computes; the scores travel as that scorer encodes them,
 * one frame a slot ({@link #frame}), and the driver adds the slots in slot order, so the sums do not
 * depend on how many workers scored them.
 */
public interface ValidationScorer extends Serializable {
  /**
   * Every candidate's scores, encoded, in one pass over {@code rows}.
   *
   * @param candidates adapter values in {@code lora}'s layout
   * @param generate whether a causal LM generates to count exact matches
   */
  byte[] score(LanguageModel base, LoraModel lora, List<float[]> candidates, List<Example> rows, int microBatch, boolean generate);

  /** Slots' answers in one message: each as its length and its bytes. Frames of several messages concatenate. */
  static byte[] frame(List<byte[]> slots) {
    java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
    for (byte[] s : slots) {
      out.writeBytes(java.nio.ByteBuffer.allocate(4).putInt(s.length).array());
      out.writeBytes(s);
    }
    return out.toByteArray();
  }

  /** The slots' answers a message holds, in order; a length that runs past the message is refused. */
  static List<byte[]> unframe(byte[] message) {
    java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(message);
    List<byte[]> out = new java.util.ArrayList<>();
    while (b.hasRemaining()) {
      int n = b.remaining() >= 4 ? b.getInt() : -1;
      if (n < 0 || n > b.remaining()) {
        throw new IllegalArgumentException("a validation answer's slot " + out.size() + " says " + n + " bytes but " + b.remaining() + " remain");
      }
      byte[] s = new byte[n];
      b.get(s);
      out.add(s);
    }
    return out;
  }
}
