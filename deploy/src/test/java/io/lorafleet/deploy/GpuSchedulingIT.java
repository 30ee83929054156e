package io.lorafleet.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * GPU plumbing without GPUs: a stand-in nvidia-smi lists two devices; the discovery script reports
 * them in Spark's format; standalone workers started with --gpus hand them to executors; tasks
 * that request a gpu get an address and the worker binds to it, which with this CPU-only build
 * must fail with a clear message rather than silently train on the CPU.
 */
class GpuSchedulingIT {
  @TempDir Path dir;

  Map<String, String> envWithFakeGpus() throws Exception {
    Path bin = dir.resolve("bin");
    Files.createDirectories(bin);
    Path smi = bin.resolve("nvidia-smi");
    Files.writeString(smi, "#!/bin/sh\n# stand-in for: nvidia-smi --query-gpu=index --format=csv,noheader\necho 0\necho 1\n");
    Files.setPosixFilePermissions(smi, PosixFilePermissions.fromString("rwxr-xr-x"));
    return Map.of("PATH", bin + ":" + System.getenv("PATH"), "SPARK_LOCAL_IP", "127.0.0.1", "LORAFLEET_LOG_DIR", dir.resolve("logs").toString());
  }

  @Test
  void discoveryScriptSpeaksSparksFormat() throws Exception {
    String script = Shell.ROOT.resolve("deploy/gpu/discover-gpus.sh").toString();
    var withGpus = new ObjectMapper().readTree(Shell.ok(List.of(script), envWithFakeGpus(), dir.resolve("d1.log"), 30).output());
    assertEquals("gpu", withGpus.get("name").asText());
    assertEquals(List.of("0", "1"), List.of(withGpus.get("addresses").get(0).asText(), withGpus.get("addresses").get(1).asText()));
    var none = new ObjectMapper().readTree(Shell.ok(List.of(script), Map.of("PATH", "/usr/bin:/bin"), dir.resolve("d2.log"), 30).output());
    assertEquals(0, none.get("addresses").size());
  }

  @Test
  void assignedGpusReachTheWorkersDeviceBinding() throws Exception {
    Map<String, String> env = envWithFakeGpus();
    Path state = dir.resolve("cluster");
    List<Long> daemons = new ArrayList<>();
    try {
      daemons.addAll(Fixtures.startCluster(state, 1, env, dir.resolve("start.log")));
      assertTrue(Files.readString(state.resolve("logs/worker-1.log")).contains("Discovering resources for gpu"));
      Fixtures.modelAndData(dir, env);
      String script = Shell.ROOT.resolve("deploy/gpu/discover-gpus.sh").toString();
      Shell.Result r = Shell.run(List.of(Shell.ROOT.resolve("deploy/standalone/submit.sh").toString(), "--state", state.toString(),
          "--conf", "spark.executor.resource.gpu.amount=1", "--conf", "spark.executor.resource.gpu.discoveryScript=" + script,
          "--conf", "spark.task.resource.gpu.amount=1", "--",
          "train", "--model", dir.resolve("model").toString(), "--data", dir.resolve("data").toString(), "--out", dir.resolve("run").toString(),
          "--workers", "2", "--steps", "2", "--global-batch", "4", "--micro-batch", "2", "--max-attempts", "1", "--timeout-ms", "60000",
          "--target-modules", "q_proj"), env, dir.resolve("submit.log"), 300);
      assertNotEquals(0, r.code(), r.output());
      assertTrue(r.output().contains("Spark assigned GPU 0 to this task but DJL's PyTorch native library sees no GPU"), r.output());
    } finally {
      Fixtures.stopCluster(state, dir.resolve("stop.log"));
    }
    Fixtures.assertStopped(daemons, state);
  }
}
