package io.lorafleet.worker.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import java.util.Arrays;

/**
 * Keys and values of past positions per layer, each (B, nkv, S, hd), held in the cache's own
 * manager. Appending closes the arrays it replaces, so a long generation does not grow native
 * memory quadratically.
 */
public final class KvCache implements AutoCloseable {
  private final NDManager manager;
  private final NDArray[] keys;
  private final NDArray[] values;
  private int length;

  public KvCache(NDManager parent, int layers) {
    this.manager = parent.newSubManager();
    this.keys = new NDArray[layers];
    this.values = new NDArray[layers];
  }

  /** Positions already cached. */
  public int length() {
    return length;
  }

  /**
   * Appends new (B, nkv, T, hd) keys and values for a layer and returns the full (B, nkv, S+T, hd)
   * pair as views owned by {@code step}, the forward's scope. Every op on them (a transpose, the
   * repeat of kv heads) then lands in that scope and is freed with it; were they the cache's own
   * arrays, each such result would join the cache's manager and, as a view, keep that step's whole
   * cache alive for as long as the cache lives: a long-lived decode batch grew by a cache's worth
   * of keys per layer and step.
   */
  NDArray[] append(int layer, NDArray k, NDArray v, NDManager step) {
    NDArray nk = keys[layer] == null ? k.duplicate() : keys[layer].concat(k, 2);
    NDArray nv = values[layer] == null ? v.duplicate() : values[layer].concat(v, 2);
    nk.attach(manager);
    nv.attach(manager);
    if (keys[layer] != null) {
      keys[layer].close();
      values[layer].close();
    }
    keys[layer] = nk;
    values[layer] = nv;
    return new NDArray[] {view(nk, step), view(nv, step)};
  }

  /** Rows in the batch (0 while nothing is cached). */
  public int rows() {
    return keys[0] == null ? 0 : (int) keys[0].getShape().get(0);
  }

  /**
   * Keeps rows {@code rows} of the batch, in that order: how continuous batching drops finished
   * rows and regroups the rest by adapter.
   */
  public void select(int[] rows) {
    if (keys[0] == null) {
      throw new IllegalStateException("select on an empty cache");
    }
    try (NDManager idx = manager.newSubManager()) {
      NDArray at = idx.create(Arrays.stream(rows).mapToLong(r -> r).toArray());
      for (int l = 0; l < keys.length; l++) {
        keys[l] = replace(keys[l], keys[l].get(at));
        values[l] = replace(values[l], values[l].get(at));
      }
    }
  }

  /**
   * Prepends {@code n} zero positions to every row. The caller's segments mark them as padding, so
   * nothing attends to them; each row keeps its own positions, so RoPE and learned positions are
   * unchanged.
   */
  public void padFront(int n) {
    if (n == 0) {
      return;
    }
    if (keys[0] == null) {
      throw new IllegalStateException("padFront on an empty cache");
    }
    try (NDManager tmp = manager.newSubManager()) {
      for (int l = 0; l < keys.length; l++) {
        keys[l] = replace(keys[l], zeros(tmp, keys[l], n).concat(keys[l], 2));
        values[l] = replace(values[l], zeros(tmp, values[l], n).concat(values[l], 2));
      }
    }
    length += n;
  }

  /** Drops the first {@code n} positions, which must be padding in every row. */
  public void dropFront(int n) {
    if (n == 0) {
      return;
    }
    for (int l = 0; l < keys.length; l++) {
      keys[l] = replace(keys[l], keys[l].get(new NDIndex(":, :, {}:", n)));
      values[l] = replace(values[l], values[l].get(new NDIndex(":, :, {}:", n)));
    }
    length -= n;
  }

  /** Appends the rows of {@code other}, which must hold as many positions; {@code other} stays open and unchanged. */
  public void appendRows(KvCache other) {
    if (other.keys.length != keys.length) {
      throw new IllegalArgumentException("caches of " + keys.length + " and " + other.keys.length + " layers");
    }
    if (keys[0] != null && other.length != length) {
      throw new IllegalArgumentException("appending rows of " + other.length + " positions to a cache of " + length + "; pad one first");
    }
    for (int l = 0; l < keys.length; l++) {
      keys[l] = keys[l] == null ? adopt(other.keys[l].duplicate()) : replace(keys[l], keys[l].concat(other.keys[l], 0));
      values[l] = values[l] == null ? adopt(other.values[l].duplicate()) : replace(values[l], values[l].concat(other.values[l], 0));
    }
    length = other.length;
  }

  /** The same storage under a handle owned by {@code owner} (reshape to its own shape is a view in torch). */
  private static NDArray view(NDArray a, NDManager owner) {
    NDArray v = a.reshape(a.getShape());
    v.attach(owner);
    return v;
  }

  private static NDArray zeros(NDManager m, NDArray like, int n) {
    Shape s = like.getShape();
    return m.zeros(new Shape(s.get(0), s.get(1), n, s.get(3)), like.getDataType());
  }

  private NDArray adopt(NDArray a) {
    a.attach(manager);
    return a;
  }

  private NDArray replace(NDArray old, NDArray next) {
    adopt(next);
    old.close();
    return next;
  }

  /** Called once per forward after all layers appended {@code t} positions. */
  void advance(int t) {
    length += t;
  }

  @Override
  public void close() {
    manager.close();
  }
}
