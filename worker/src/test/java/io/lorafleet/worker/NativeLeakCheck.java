package io.lorafleet.worker;

import ai.djl.ndarray.BaseNDManager;
import ai.djl.ndarray.NDManager;
import java.lang.reflect.Field;
import java.util.Map;
import java.util.ServiceLoader;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * The test harness's native-memory leak check, registered for every test class of the modules that
 * compute with DJL (META-INF/services, with JUnit's extension autodetection on in the build): it
 * counts the native arrays and managers alive under the engine's system manager before a class and
 * again after it (after its {@code @AfterAll}), and fails the class when the count grew. What a
 * module keeps on purpose across classes, such as the driver's per-executor model cache, is handed
 * back first through a {@link Release} service, so that only what a test forgot to close remains.
 *
 * <p>Arrow needs no such count: every allocator in main code is a per-task try-with-resources
 * root, and closing a root that still holds buffers throws, which fails the test already.
 */
public final class NativeLeakCheck implements BeforeAllCallback, AfterAllCallback {
  /** What a module holds across test classes on purpose, given back before each count. */
  public interface Release {
    void release();
  }

  private static final ExtensionContext.Namespace NS = ExtensionContext.Namespace.create(NativeLeakCheck.class);

  @Override
  public void beforeAll(ExtensionContext ctx) throws Exception {
    ctx.getStore(NS).put("before", held());
  }

  @Override
  public void afterAll(ExtensionContext ctx) throws Exception {
    int before = ctx.getStore(NS).get("before", Integer.class);
    int after = held();
    if (after > before) {
      throw new AssertionError(ctx.getDisplayName() + " leaked native memory: " + (after - before) + " DJL arrays or managers were left open ("
          + before + " before the class, " + after + " after it); close them in a try-with-resources scope");
    }
  }

  /** Arrays and managers alive under the system manager, once every {@link Release} has given back what it holds. */
  public static int held() throws ReflectiveOperationException {
    ServiceLoader.load(Release.class).forEach(Release::release);
    try (NDManager probe = NDManager.newBaseManager()) {
      return count(probe.getParentManager()) - 1; // the probe itself
    }
  }

  /** Arrays and managers under a manager and its sub-managers, the managers included. */
  public static int count(NDManager m) throws ReflectiveOperationException {
    Field f = BaseNDManager.class.getDeclaredField("resources");
    f.setAccessible(true);
    int n = 0;
    for (Object r : ((Map<?, ?>) f.get(m)).values()) {
      n += r instanceof NDManager sub ? 1 + count(sub) : 1;
    }
    return n;
  }
}
