package io.lorafleet.worker.flat;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * Where each trainable tensor lives in one flat float buffer: the unit workers send and the driver
 * reduces and optimises. Slots are contiguous, row-major, in the order they were added.
 *
 * <p>LoRA layout (see {@link LoraModel}): for each adapted projection in forward order, lora_A
 * (rank×in) then lora_B (out×rank); then trained biases in checkpoint order. Full fine-tuning
 * layout: every base tensor in checkpoint order and HF shape.
 */
public final class FlatLayout {
  /**
   * One tensor: its checkpoint key, its shape and its offset in the buffer. A {@code frozen} slot
   * travels and is saved with the adapter but never trains (VeRA's shared projections): it gets no
   * gradient and the optimizer leaves it alone.
   */
  public record Slot(String key, long[] shape, int offset, int size, boolean frozen) {
    public Slot {
      shape = shape.clone();
    }

    public Slot(String key, long[] shape, int offset, int size) {
      this(key, shape, offset, size, false);
    }

    @Override
    public long[] shape() {
      return shape.clone();
    }
  }

  private final List<Slot> slots;
  private final Map<String, Slot> byKey;
  private final int size;

  private FlatLayout(List<Slot> slots) {
    this.slots = Collections.unmodifiableList(slots);
    Map<String, Slot> m = new LinkedHashMap<>();
    slots.forEach(s -> m.put(s.key(), s));
    this.byKey = Collections.unmodifiableMap(m);
    this.size = slots.isEmpty() ? 0 : slots.get(slots.size() - 1).offset() + slots.get(slots.size() - 1).size();
  }

  public static Builder builder() {
    return new Builder();
  }

  public List<Slot> slots() {
    return slots;
  }

  public Optional<Slot> slot(String key) {
    return Optional.ofNullable(byKey.get(key));
  }

  /** Total floats in the buffer. */
  public int size() {
    return size;
  }

  /** A copy of one slot's values. */
  public float[] slice(float[] flat, Slot s) {
    return Arrays.copyOfRange(flat, s.offset(), s.offset() + s.size());
  }

  /** A stable description of the layout, for checking that two parties agree on it. */
  public String signature() {
    StringBuilder b = new StringBuilder();
    for (Slot s : slots) {
      b.append(s.key()).append(Arrays.toString(s.shape())).append(';');
    }
    return b.toString();
  }

  /** Appends slots in order. */
  public static final class Builder {
    private final List<Slot> slots = new ArrayList<>();
    private long offset;

    public Builder add(String key, long... shape) {
      return add(key, false, shape);
    }

    /** A slot that is saved and sent but never trained. */
    public Builder addFrozen(String key, long... shape) {
      return add(key, true, shape);
    }

    private Builder add(String key, boolean frozen, long... shape) {
      long n = 1;
      for (long d : shape) {
        n *= d;
      }
      if (offset + n > Integer.MAX_VALUE - 8) {
        throw new IllegalArgumentException("trainable parameters exceed one flat buffer (2^31 floats) at " + key);
      }
      slots.add(new Slot(key, shape, (int) offset, (int) n, frozen));
      offset += n;
      return this;
    }

    public FlatLayout build() {
      return new FlatLayout(new ArrayList<>(slots));
    }
  }
}
