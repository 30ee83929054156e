package io.lorafleet.driver.serve;

import ai.djl.ndarray.NDManager;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.MixedDelta;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.model.LinearDelta;
import io.lorafleet.worker.safetensors.SafetensorsException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * The adapters a server holds, by name: each read once, checked against the base, and bound on the
 * device in a scope of its own, ready for any batch. Loading at run time reads only under the
 * adapter root (symbolic links resolved). Unloading removes the name at once; the adapter's weights
 * are freed when the last request that uses it ends.
 */
public final class AdapterRegistry implements AutoCloseable {
  /** A loaded adapter; requests hold it from admission to their end. */
  public static final class Entry {
    private final String name;
    private final Path dir;
    private final int group;
    private final LinearDelta delta;
    private final NDManager scope;
    private int users;
    private boolean unloaded;

    private Entry(String name, Path dir, int group, LinearDelta delta, NDManager scope) {
      this.name = name;
      this.dir = dir;
      this.group = group;
      this.delta = delta;
      this.scope = scope;
    }

    public String name() {
      return name;
    }

    public Path dir() {
      return dir;
    }

    /** A number no other adapter of this server has had: rows of one group share a batch segment. */
    int group() {
      return group;
    }

    LinearDelta delta() {
      return delta;
    }
  }

  private final LanguageModel base;
  private final String baseName;
  private final Optional<Path> root;
  private final Map<String, Entry> byName = new LinkedHashMap<>();
  private int groups;

  public AdapterRegistry(LanguageModel base, String baseName, Optional<Path> root) {
    this.base = base;
    this.baseName = baseName;
    this.root = root.map(r -> {
      try {
        return r.toRealPath();
      } catch (IOException e) {
        throw new IllegalArgumentException("--adapter-root " + r + " is not a directory that exists: " + e.getMessage());
      }
    });
  }

  /** Loads an adapter given at start-up (no root check); a refusal names the --adapter option. */
  public synchronized void loadTrusted(String name, Path dir) {
    try {
      add(name, dir);
    } catch (ApiError e) {
      throw new IllegalArgumentException("--adapter " + name + "=" + dir + ": " + e.getMessage(), e);
    }
  }

  /** Loads an adapter at run time: 403 outside the adapter root, 404 for a missing directory, 400 for a bad name or adapter. */
  public synchronized void loadUnderRoot(String name, String path) {
    if (root.isEmpty()) {
      throw new ApiError(403, "permission_error", Optional.of("lora_path"), "loading adapters at run time is off; start serve with --adapter-root DIR");
    }
    Path r = root.get();
    Path p;
    try {
      p = r.resolve(path).normalize();
    } catch (InvalidPathException e) { // a NUL character, the only byte a Linux path cannot hold
      throw ApiError.invalid("lora_path", "lora_path must be a path under the adapter root but holds a character no path may hold (at index "
          + e.getIndex() + ")");
    }
    if (!p.startsWith(r)) {
      throw new ApiError(403, "permission_error", Optional.of("lora_path"), "lora_path " + path + " is outside the adapter root " + r);
    }
    if (!Files.isDirectory(p)) {
      throw new ApiError(404, "not_found_error", Optional.of("lora_path"), "lora_path " + path + " is not a directory under " + r);
    }
    Path real;
    try {
      real = p.toRealPath();
    } catch (IOException e) {
      throw new ApiError(404, "not_found_error", Optional.of("lora_path"), "lora_path " + path + " cannot be resolved under " + r);
    }
    if (!real.startsWith(r)) {
      throw new ApiError(403, "permission_error", Optional.of("lora_path"), "lora_path " + path + " leads outside the adapter root " + r
          + " (to " + real + ")");
    }
    add(name, real);
  }

  private void add(String name, Path dir) {
    if (name.isBlank() || name.equals(baseName)) {
      throw ApiError.invalid("lora_name", "lora_name '" + name + "' must be non-empty and differ from the base model's name '" + baseName + "'");
    }
    if (byName.containsKey(name)) {
      throw ApiError.invalid("lora_name", "an adapter named '" + name + "' is already loaded (from " + byName.get(name).dir + "); unload it first");
    }
    NDManager scope = base.manager().newSubManager();
    try {
      AdapterFormat.Loaded a = AdapterFormat.read(dir, base);
      LinearDelta delta = MixedDelta.bindEach(scope, List.of(a)).get(0);
      byName.put(name, new Entry(name, dir, groups++, delta, scope));
    } catch (IllegalArgumentException | SafetensorsException e) { // a bad adapter, named by the reader
      scope.close();
      throw ApiError.invalid("lora_path", "cannot serve the adapter in " + dir + ": " + e.getMessage());
    } catch (UncheckedIOException e) {
      scope.close();
      throw ApiError.invalid("lora_path", "cannot read the adapter in " + dir + ": " + e.getCause().getMessage());
    } catch (RuntimeException e) { // the server's own fault: ApiServer logs it and answers 500
      scope.close();
      throw e;
    }
  }

  /** Removes a name; 404 when none is loaded under it. */
  public synchronized void unload(String name) {
    Entry e = byName.remove(name);
    if (e == null) {
      throw new ApiError(404, "not_found_error", Optional.of("lora_name"), "no adapter named '" + name + "' is loaded; loaded: " + byName.keySet());
    }
    e.unloaded = true;
    if (e.users == 0) {
      e.scope.close();
    }
  }

  /** The adapter of that name, held for a request until {@link #release}. */
  synchronized Optional<Entry> acquire(String name) {
    Entry e = byName.get(name);
    if (e != null) {
      e.users++;
    }
    return Optional.ofNullable(e);
  }

  synchronized void release(Entry e) {
    e.users--;
    if (e.unloaded && e.users == 0) {
      e.scope.close();
    }
  }

  /** The loaded adapters, in load order. */
  public synchronized List<Entry> list() {
    return new ArrayList<>(byName.values());
  }

  @Override
  public synchronized void close() {
    byName.values().forEach(e -> e.scope.close());
    byName.clear();
  }
}
