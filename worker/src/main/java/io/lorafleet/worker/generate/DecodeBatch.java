package io.lorafleet.worker.generate;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.worker.lora.MixedDelta;
import io.lorafleet.worker.lora.StackedDelta;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.ForwardContext;
import io.lorafleet.worker.model.KvCache;
import io.lorafleet.worker.model.LinearDelta;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.Comparator;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.stream.Collectors;

/**
 * Rows that decode together, one token per step, over one KV cache (B, nkv, S, hd): continuous
 * batching as in Orca's iteration-level scheduling. Rows join between steps (their prompts are
 * prefilled as a batch of their own, then their cache is appended to the running one) and leave as
 * soon as they finish, so a long generation never holds a short one back.
 *
 * <p>Every row is left-padded to the cache's length: row r holds {@code tokens[r]} real positions at
 * the end of the cache, after S − tokens[r] padding positions that its segments mark so that no
 * real query attends to them. Each row keeps its own positions, so the result for a row does not
 * depend on what it shares the batch with, up to the rounding that batch shape brings.
 *
 * <p>Rows are kept ordered by adapter group, so that each group is one contiguous segment of a
 * {@link MixedDelta}: the base projection runs once for the batch and each adapter adds its term to
 * its own rows.
 */
public final class DecodeBatch implements AutoCloseable {
  /** A sequence to start: its prompt, its adapter group (rows of one group share a segment) and the group's adapter term (empty: the base). */
  public record Join(long id, int[] prompt, int group, Optional<LinearDelta> delta) {
    public Join {
      if (prompt.length == 0) {
        throw new IllegalArgumentException("prompt must hold at least one token");
      }
    }
  }

  private record Row(long id, int group, Optional<LinearDelta> delta, int tokens) {
    Row plus(int n) {
      return new Row(id, group, delta, tokens + n);
    }
  }

  private final LanguageModel model;
  private final Map<String, NDArray> overrides;
  private final NDManager manager;
  private Optional<KvCache> cache = Optional.empty();
  private List<Row> rows = new ArrayList<>();
  /** Decode steps' adapters stacked ({@link StackedDelta}), by group; kept while it covers the batch's adapters and is not too wide. */
  private Optional<Map.Entry<List<Integer>, StackedDelta>> stacked = Optional.empty();

  public DecodeBatch(LanguageModel model) {
    this(model, Map.of());
  }

  /** With base tensors replaced for every row ({@link ForwardContext#overrides}: trained biases, a fully fine-tuned model). */
  public DecodeBatch(LanguageModel model, Map<String, NDArray> overrides) {
    this.model = model;
    this.overrides = Map.copyOf(overrides);
    this.manager = model.manager().newSubManager();
  }

  /** Rows now in the batch. */
  public int size() {
    return rows.size();
  }

  /** The ids of the rows, in batch order. */
  public List<Long> ids() {
    return rows.stream().map(Row::id).toList();
  }

  /** Positions in the cache (the longest row's tokens). */
  public int cacheLength() {
    return cache.map(KvCache::length).orElse(0);
  }

  /**
   * Prefills {@code joins} as one left-padded batch, adds them to the running batch and returns
   * each join's next-token logits (V), by id. The joins' last prompt tokens are cached: a joined row
   * next takes the token chosen from these logits.
   */
  public Map<Long, float[]> join(List<Join> joins) {
    if (joins.isEmpty()) {
      return Map.of();
    }
    Set<Long> ids = new HashSet<>(ids());
    for (Join j : joins) {
      if (!ids.add(j.id())) {
        throw new IllegalArgumentException("row " + j.id() + " is already in the batch");
      }
      if (j.prompt().length > model.config().maxPositions()) {
        throw new IllegalArgumentException("row " + j.id() + " has a prompt of " + j.prompt().length + " tokens, past the model's context of "
            + model.config().maxPositions() + " positions");
      }
    }
    List<Join> sorted = new ArrayList<>(joins);
    sorted.sort(Comparator.comparingInt(Join::group)); // stable
    int b = sorted.size();
    int len = sorted.stream().mapToInt(j -> j.prompt().length).max().orElseThrow();
    int[][] step = new int[b][len];
    int[][] pos = new int[b][len];
    int[][] seg = new int[b][len]; // padding 0, the prompt 1
    List<Row> fresh = new ArrayList<>();
    for (int r = 0; r < b; r++) {
      int[] p = sorted.get(r).prompt();
      int pad = len - p.length;
      System.arraycopy(p, 0, step[r], pad, p.length);
      for (int t = pad; t < len; t++) {
        pos[r][t] = t - pad;
        seg[r][t] = 1;
      }
      fresh.add(new Row(sorted.get(r).id(), sorted.get(r).group(), sorted.get(r).delta(), p.length));
    }
    KvCache joined = model.newCache(manager);
    float[][] logits;
    boolean adopted = false;
    try {
      logits = forward(fresh, step, pos, seg, joined, false);
      if (cache.isEmpty()) {
        cache = Optional.of(joined);
        rows = new ArrayList<>(fresh);
        adopted = true;
      } else {
        merge(joined, fresh);
      }
    } finally {
      if (!adopted) {
        joined.close();
      }
    }
    Map<Long, float[]> out = new LinkedHashMap<>();
    for (int r = 0; r < b; r++) {
      out.put(fresh.get(r).id(), logits[r]);
    }
    return out;
  }

  /**
   * Feeds every row its next token ({@code next} holds one for each id in the batch) and returns
   * each row's next-token logits (V), by id. A row whose next position is past the model's context
   * is refused: no caller may decode beyond it.
   */
  public Map<Long, float[]> step(Map<Long, Integer> next) {
    if (rows.isEmpty()) {
      return Map.of();
    }
    KvCache c = cache.orElseThrow();
    int b = rows.size();
    int keys = c.length() + 1;
    int[][] step = new int[b][1];
    int[][] pos = new int[b][1];
    int[][] seg = new int[b][keys];
    for (int r = 0; r < b; r++) {
      Row row = rows.get(r);
      Integer id = next.get(row.id());
      if (id == null) {
        throw new IllegalArgumentException("no next token for row " + row.id());
      }
      if (row.tokens() >= model.config().maxPositions()) { // callers end rows at the context (Generator.atContextEnd); this is the floor under them
        throw new IllegalStateException("row " + row.id() + " would decode at position " + row.tokens() + ", past the model's context of "
            + model.config().maxPositions() + " positions");
      }
      step[r][0] = id;
      pos[r][0] = row.tokens();
      Arrays.fill(seg[r], c.length() - row.tokens(), keys, 1);
    }
    float[][] logits = forward(rows, step, pos, seg, c, true);
    Map<Long, float[]> out = new LinkedHashMap<>();
    List<Row> advanced = new ArrayList<>();
    for (int r = 0; r < b; r++) {
      out.put(rows.get(r).id(), logits[r]);
      advanced.add(rows.get(r).plus(1));
    }
    rows = advanced;
    return out;
  }

  /** Removes the rows of {@code ids} (ids not in the batch are ignored) and the positions that were padding for every row left. */
  public void leave(Collection<Long> ids) {
    Set<Long> gone = new HashSet<>(ids);
    List<Integer> keep = new ArrayList<>();
    for (int r = 0; r < rows.size(); r++) {
      if (!gone.contains(rows.get(r).id())) {
        keep.add(r);
      }
    }
    if (keep.size() == rows.size()) {
      return;
    }
    List<Row> left = keep.stream().map(rows::get).toList();
    rows = new ArrayList<>(left);
    if (left.isEmpty()) {
      cache.ifPresent(KvCache::close);
      cache = Optional.empty();
      return;
    }
    KvCache c = cache.orElseThrow();
    c.select(keep.stream().mapToInt(Integer::intValue).toArray());
    c.dropFront(c.length() - left.stream().mapToInt(Row::tokens).max().orElseThrow());
  }

  /**
   * (B, V) logits of the last position of each row, from one forward under the rows' adapters: in
   * decode steps, where ops cost more than flops, several plain LoRA adapters run stacked; otherwise
   * (and in prefill) per-adapter segments.
   */
  private float[][] forward(List<Row> batch, int[][] step, int[][] pos, int[][] seg, KvCache c, boolean decode) {
    try (NDManager tok = manager.newSubManager()) {
      ForwardContext ctx = new ForwardContext(tok, overrides, decode ? stackedOrSegments(tok, batch) : delta(batch));
      NDArray logits = model.forwardLast(ctx, step, pos, seg, c); // (B, 1, V)
      float[] flat = logits.get(new NDIndex(":, -1, :")).toType(DataType.FLOAT32, false).toFloatArray(); // (B, V)
      int v = flat.length / batch.size();
      float[][] out = new float[batch.size()][];
      for (int r = 0; r < out.length; r++) {
        out[r] = Arrays.copyOfRange(flat, r * v, (r + 1) * v);
      }
      return out;
    }
  }

  private LinearDelta stackedOrSegments(NDManager step, List<Row> batch) {
    Map<Integer, LinearDelta> byGroup = new LinkedHashMap<>();
    batch.forEach(r -> r.delta().ifPresent(d -> byGroup.putIfAbsent(r.group(), d)));
    if (byGroup.size() < 2 || !byGroup.values().stream().allMatch(StackedDelta::stackable)) {
      return delta(batch);
    }
    boolean covers = stacked.isPresent() && stacked.get().getKey().containsAll(byGroup.keySet())
        && stacked.get().getKey().size() <= 2 * byGroup.size();
    if (!covers) {
      stacked.ifPresent(e -> e.getValue().close());
      List<Integer> groups = new ArrayList<>(byGroup.keySet());
      stacked = Optional.of(Map.entry(groups, StackedDelta.of(manager, groups.stream().map(byGroup::get).toList())));
    }
    List<Integer> slots = stacked.get().getKey();
    int[] rowSlot = batch.stream().mapToInt(r -> r.delta().isPresent() ? slots.indexOf(r.group()) : -1).toArray();
    return stacked.get().getValue().rows(step, rowSlot);
  }

  /** One segment per run of rows of the same group; the bare base when no row has an adapter. */
  private static LinearDelta delta(List<Row> batch) {
    if (batch.stream().noneMatch(r -> r.delta().isPresent())) {
      return LinearDelta.NONE;
    }
    List<MixedDelta.Segment> segments = new ArrayList<>();
    int start = 0;
    for (int r = 1; r <= batch.size(); r++) {
      if (r == batch.size() || batch.get(r).group() != batch.get(start).group()) {
        segments.add(new MixedDelta.Segment(start, r, batch.get(start).delta()));
        start = r;
      }
    }
    return new MixedDelta(segments);
  }

  /** Appends the joined rows' cache to the running one (left-padding the shorter) and regroups all rows by adapter. */
  private void merge(KvCache joined, List<Row> fresh) {
    KvCache c = cache.get();
    if (joined.length() > c.length()) {
      c.padFront(joined.length() - c.length());
    } else {
      joined.padFront(c.length() - joined.length());
    }
    c.appendRows(joined);
    List<Row> all = new ArrayList<>(rows);
    all.addAll(fresh);
    Integer[] order = new Integer[all.size()];
    Arrays.setAll(order, i -> i);
    Arrays.sort(order, Comparator.comparingInt(i -> all.get(i).group())); // stable: each group keeps its order
    boolean moved = false;
    for (int i = 0; i < order.length; i++) {
      moved |= order[i] != i;
    }
    if (moved) {
      c.select(Arrays.stream(order).mapToInt(Integer::intValue).toArray());
    }
    rows = Arrays.stream(order).map(all::get).collect(Collectors.toCollection(ArrayList::new));
  }

  @Override
  public void close() {
    stacked.ifPresent(e -> e.getValue().close());
    cache.ifPresent(KvCache::close);
    manager.close();
  }
}
