package io.lorafleet.worker.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;

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

  /** Appends new (B, nkv, T, hd) keys and values for a layer and returns the full (B, nkv, S+T, hd) pair. */
  NDArray[] append(int layer, NDArray k, NDArray v) {
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
    return new NDArray[] {nk, nv};
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
