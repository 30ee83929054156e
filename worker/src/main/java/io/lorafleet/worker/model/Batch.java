package io.lorafleet.worker.model;

import java.util.Arrays;
import java.util.List;
import java.util.Optional;

/**
 * A right-padded batch on the host. Rows are token ids; labels follow the HF convention (aligned
 * with inputs, -100 where no loss falls; the model shifts them). {@code positionIds} restart at 0
 * for each packed example, and {@code segmentIds} then keep attention inside each example.
 * {@code targets} holds one value per row for sequence classification (a class id, or the value a
 * regression head predicts); token labels are then all -100. {@code tokenTypes} are an encoder's
 * token type ids (BERT's 0 for the first text of a pair and 1 for the second, as the tokenizer's
 * post-processor gives them); none means all 0. {@code rowKeys} name each row for its dropout
 * masks ({@link Dropout}): in training, the row's position in the run's data order; 0, 1, … unless
 * set with {@link #withRowKeys}.
 */
public record Batch(int[][] inputIds, int[][] labels, int[][] positionIds, Optional<int[][]> segmentIds, Optional<float[]> targets,
    Optional<int[][]> tokenTypes, long[] rowKeys) {
  public static final int IGNORE = -100;

  /** A batch with token labels (causal LM). */
  public Batch(int[][] inputIds, int[][] labels, int[][] positionIds, Optional<int[][]> segmentIds) {
    this(inputIds, labels, positionIds, segmentIds, Optional.empty(), Optional.empty());
  }

  /** Rows keyed 0, 1, …. */
  public Batch(int[][] inputIds, int[][] labels, int[][] positionIds, Optional<int[][]> segmentIds, Optional<float[]> targets,
      Optional<int[][]> tokenTypes) {
    this(inputIds, labels, positionIds, segmentIds, targets, tokenTypes, java.util.stream.LongStream.range(0, inputIds.length).toArray());
  }

  /** This batch with its rows keyed {@code first}, {@code first} + 1, …: their positions in the run's data order. */
  public Batch withRowKeys(long first) {
    return new Batch(inputIds, labels, positionIds, segmentIds, targets, tokenTypes, java.util.stream.LongStream.range(first, first + size()).toArray());
  }

  public Batch {
    if (rowKeys.length != inputIds.length) {
      throw new IllegalArgumentException("a batch needs one row key per row but has " + rowKeys.length + " for " + inputIds.length);
    }
    if (targets.isPresent() && targets.get().length != inputIds.length) {
      throw new IllegalArgumentException("a classification batch needs one target per row but has " + targets.get().length + " for " + inputIds.length);
    }
    int b = inputIds.length;
    if (b == 0) {
      throw new IllegalArgumentException("a batch needs at least one row");
    }
    int t = inputIds[0].length;
    for (int[][] m : tokenTypes.isPresent() ? new int[][][] {inputIds, labels, positionIds, tokenTypes.get()} : new int[][][] {inputIds, labels, positionIds}) {
      if (m.length != b) {
        throw new IllegalArgumentException("batch fields must have " + b + " rows but one has " + m.length);
      }
      for (int[] row : m) {
        if (row.length != t) {
          throw new IllegalArgumentException("batch rows must all have length " + t + " but found " + row.length);
        }
      }
    }
  }

  public int size() {
    return inputIds.length;
  }

  public int seqLen() {
    return inputIds[0].length;
  }

  /**
   * What the loss is summed over, and so what the driver's mean divides by: the rows of a
   * classification batch, else the target tokens that carry loss after the causal shift
   * (labels[b][t] != -100 for t >= 1).
   */
  public long targetTokens() {
    if (targets.isPresent()) {
      return size();
    }
    long n = 0;
    for (int[] row : labels) {
      for (int t = 1; t < row.length; t++) {
        if (row[t] != IGNORE) {
          n++;
        }
      }
    }
    return n;
  }

  /**
   * The rows of {@code parts} in order, as one batch right-padded to the longest (pad id 0, label
   * -100, positions running on as {@link #of} pads them), each row keeping its key. Parts must be
   * plain causal rows: no packing, targets or token types.
   */
  public static Batch concat(List<Batch> parts) {
    int t = parts.stream().mapToInt(Batch::seqLen).max().orElse(0);
    int b = parts.stream().mapToInt(Batch::size).sum();
    int[][] in = new int[b][t];
    int[][] lab = new int[b][t];
    int[][] pos = new int[b][t];
    long[] keys = new long[b];
    int r = 0;
    for (Batch p : parts) {
      if (p.segmentIds().isPresent() || p.targets().isPresent() || p.tokenTypes().isPresent()) {
        throw new IllegalArgumentException("only plain causal rows concatenate; found a packed, classification or token-typed batch");
      }
      for (int i = 0; i < p.size(); i++, r++) {
        System.arraycopy(p.inputIds()[i], 0, in[r], 0, p.seqLen());
        System.arraycopy(p.labels()[i], 0, lab[r], 0, p.seqLen());
        Arrays.fill(lab[r], p.seqLen(), t, IGNORE);
        System.arraycopy(p.positionIds()[i], 0, pos[r], 0, p.seqLen());
        for (int k = p.seqLen(); k < t; k++) {
          pos[r][k] = k;
        }
        keys[r] = p.rowKeys()[i];
      }
    }
    return new Batch(in, lab, pos, Optional.empty(), Optional.empty(), Optional.empty(), keys);
  }

  /** Rows [from, to) of this batch, at its length. */
  public Batch rows(int from, int to) {
    return new Batch(Arrays.copyOfRange(inputIds, from, to), Arrays.copyOfRange(labels, from, to), Arrays.copyOfRange(positionIds, from, to),
        segmentIds.map(x -> Arrays.copyOfRange(x, from, to)), targets.map(x -> Arrays.copyOfRange(x, from, to)),
        tokenTypes.map(x -> Arrays.copyOfRange(x, from, to)), Arrays.copyOfRange(rowKeys, from, to));
  }

  /** Pads variable-length examples on the right to one length (pad id 0, label -100). */
  public static Batch of(int[][] ids, int[][] labels) {
    int t = Arrays.stream(ids).mapToInt(r -> r.length).max().orElse(0);
    int[][] in = new int[ids.length][t];
    int[][] lab = new int[ids.length][t];
    int[][] pos = new int[ids.length][t];
    for (int b = 0; b < ids.length; b++) {
      if (labels[b].length != ids[b].length) {
        throw new IllegalArgumentException("row " + b + ": labels length " + labels[b].length + " differs from input_ids length " + ids[b].length);
      }
      Arrays.fill(lab[b], IGNORE);
      System.arraycopy(ids[b], 0, in[b], 0, ids[b].length);
      System.arraycopy(labels[b], 0, lab[b], 0, ids[b].length);
      for (int i = 0; i < t; i++) {
        pos[b][i] = i;
      }
    }
    return new Batch(in, lab, pos, Optional.empty());
  }

  /**
   * Sequence-classification rows, right-padded with id 0: positions 0.. per row, no token labels,
   * and padding in segment 1 where the row's tokens are segment 0, so that an encoder's
   * bidirectional attention never reads it (transformers' attention_mask).
   */
  public static Batch classification(int[][] ids, float[] targets) {
    return classification(ids, new int[ids.length][0], targets);
  }

  /**
   * As {@link #classification(int[][], float[])} with each row's token types (a row's may be empty:
   * all 0), padded with type 0.
   */
  public static Batch classification(int[][] ids, int[][] types, float[] targets) {
    int t = Arrays.stream(ids).mapToInt(r -> r.length).max().orElse(0);
    int[][] tt = new int[ids.length][t];
    boolean any = false;
    for (int b = 0; b < ids.length; b++) {
      if (types[b].length != 0 && types[b].length != ids[b].length) {
        throw new IllegalArgumentException("row " + b + " has " + types[b].length + " token types for " + ids[b].length + " tokens");
      }
      System.arraycopy(types[b], 0, tt[b], 0, types[b].length);
      any |= Arrays.stream(types[b]).anyMatch(x -> x != 0);
    }
    int[][] in = new int[ids.length][t];
    int[][] lab = new int[ids.length][t];
    int[][] pos = new int[ids.length][t];
    int[][] seg = new int[ids.length][t];
    for (int b = 0; b < ids.length; b++) {
      if (ids[b].length == 0) {
        throw new IllegalArgumentException("row " + b + " of a classification batch has no tokens");
      }
      System.arraycopy(ids[b], 0, in[b], 0, ids[b].length);
      Arrays.fill(lab[b], IGNORE);
      for (int i = 0; i < t; i++) {
        pos[b][i] = i;
        seg[b][i] = i < ids[b].length ? 0 : 1;
      }
    }
    return new Batch(in, lab, pos, Optional.of(seg), Optional.of(targets.clone()), any ? Optional.of(tt) : Optional.empty());
  }

  /** Packed rows: positions restart per example; the segment id increments whenever a position resets to 0. */
  public static Batch packed(int[][] ids, int[][] labels, int[][] positionIds) {
    int[][] seg = new int[ids.length][];
    for (int b = 0; b < ids.length; b++) {
      seg[b] = new int[ids[b].length];
      int s = -1;
      for (int i = 0; i < ids[b].length; i++) {
        if (positionIds[b][i] == 0) {
          s++;
        }
        seg[b][i] = Math.max(s, 0);
      }
    }
    return new Batch(ids, labels, positionIds, Optional.of(seg));
  }
}
