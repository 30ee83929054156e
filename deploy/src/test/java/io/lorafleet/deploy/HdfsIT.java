package io.lorafleet.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.lorafleet.datasets.fs.NodeCopy;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.IntStream;
import org.apache.hadoop.hdfs.DistributedFileSystem;
import org.apache.hadoop.hdfs.protocol.HdfsConstants;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.io.TempDir;

/**
 * The whole pipeline with every path on a real HDFS (Hadoop's MiniDFSCluster: a NameNode and 3
 * DataNodes on 127.0.0.1, replication 3), run through the launcher as a user runs it, and the faults
 * of the local filesystem's suite on HDFS: a driver SIGKILLed while it uploads a checkpoint, a second
 * driver, a DataNode stopped mid-run, the NameNode in safe mode and a full quota. Faults act at a
 * step named in spark.lorafleet.faults ({@code pause@STEP} holds the run there until the test has
 * acted on the storage), never after a timer.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class HdfsIT {
  static final int STEPS = 12; // as Fixtures.train runs them
  static final int EVERY = 3;
  @TempDir static Path dir;
  static MiniHdfs hdfs;
  static Map<String, String> env;
  static Map<String, float[]> uninterrupted;
  static Path cache;
  static long copiedAt;

  @BeforeAll
  static void start() throws Exception {
    hdfs = MiniHdfs.start(dir.resolve("hdfs"), 3, 3);
    cache = dir.resolve("node-cache");
    env = Map.of("SPARK_LOCAL_IP", "127.0.0.1", "LORAFLEET_LOG_DIR", dir.resolve("logs").toString(), "LORAFLEET_JAVA_OPTS",
        "-Dlorafleet.model.cache=" + cache);
    Fixtures.modelAndRecords(dir, env);
    hdfs.put(dir.resolve("model"), "/models/tiny");
    hdfs.put(dir.resolve("d.jsonl"), "/raw/d.jsonl");
    Shell.ok(List.of(Fixtures.launcher(), "prepare", "--model", hdfs.uri("/models/tiny"), "--input", hdfs.uri("/raw/d.jsonl"), "--out",
        hdfs.uri("/data"), "--shards", "2"), env, dir.resolve("prepare.log"), 300);
    Shell.ok(train("/runs/base"), env, dir.resolve("base.log"), 300);
    uninterrupted = adapter("/runs/base");
    copiedAt = Files.getLastModifiedTime(weightsCopy().resolve(NodeCopy.MANIFEST)).toMillis();
  }

  /** The node's one verified copy of the model's weights, taken from HDFS. */
  static Path weightsCopy() throws Exception {
    List<Path> copies;
    try (var s = Files.list(cache)) {
      copies = s.filter(p -> Files.isRegularFile(p.resolve("model.safetensors"))).toList();
    }
    assertEquals(1, copies.size(), "one copy of the weights on this node: " + copies);
    return copies.get(0);
  }

  @AfterAll
  static void stop() {
    if (hdfs != null) {
      hdfs.close();
    }
  }

  static List<String> train(String out, String... extra) {
    return Fixtures.train(hdfs.uri("/models/tiny"), hdfs.uri("/data"), hdfs.uri(out), extra);
  }

  static List<String> paused(String out, int step, String... extra) {
    List<String> a = train(out, "--spark-conf", "spark.lorafleet.faults=pause@" + step);
    a.addAll(List.of(extra));
    return a;
  }

  /** The final adapter of a run on HDFS, every tensor. */
  static Map<String, float[]> adapter(String run) throws Exception {
    Path local = hdfs.get(run + "/adapter", dir.resolve("fetched" + run.replace('/', '-')));
    return Fixtures.adapter(local.getParent());
  }

  static void assertSameAdapter(String run, String what) throws Exception {
    Fixtures.assertSameTensors(uninterrupted, adapter(run), what);
  }

  /** Waits (bounded) until a run paused with pause@STEP says so on HDFS, and its checkpoints before that step are committed. */
  static void awaitPause(Process p, String run, int step) throws Exception {
    await(p, run + "/_paused-" + step);
    for (int c = EVERY; c < step; c += EVERY) {
      await(p, run + "/checkpoint-" + c + "/_committed.json"); // checkpoints are uploaded off the step loop
    }
  }

  static void await(Process p, String path) throws Exception {
    for (int i = 0; i < 3000 && !hdfs.exists(path); i++) {
      assertTrue(p.isAlive(), "the run ended before " + path + " appeared");
      Thread.sleep(100);
    }
    assertTrue(hdfs.exists(path), path + " did not appear");
  }

  static Shell.Result finish(Process p, Path log) throws Exception {
    assertTrue(p.waitFor(300, java.util.concurrent.TimeUnit.SECONDS), "the run did not finish; output:\n" + Shell.read(log));
    return new Shell.Result(p.exitValue(), Shell.read(log));
  }

  static List<Integer> metricSteps(String run) throws Exception {
    List<Integer> steps = new ArrayList<>();
    for (String line : new String(hdfs.read(run + "/metrics.jsonl"), java.nio.charset.StandardCharsets.UTF_8).split("\n")) {
      steps.add(new ObjectMapper().readTree(line).get("step").asInt());
    }
    return steps;
  }

  @Test
  @Order(1)
  void evalAverageAndMergeReadTheRunFromHdfs() throws Exception {
    assertTrue(hdfs.exists("/runs/base/checkpoint-12/_committed.json"), "a checkpoint's commit marker");
    assertTrue(hdfs.exists("/runs/base/.lorafleet.lock") == false, "the lock is released");
    Shell.Result eval = Shell.ok(List.of(Fixtures.launcher(), "eval", "--model", hdfs.uri("/models/tiny"), "--data", hdfs.uri("/data"), "--split", "train", "--run",
        hdfs.uri("/runs/base"), "--out", hdfs.uri("/evals/base")), env, dir.resolve("eval.log"), 300);
    for (String c : List.of("base", "checkpoint-3", "checkpoint-12", "adapter")) {
      assertTrue(eval.output().contains(c), c + " evaluated:\n" + eval.output());
    }
    assertTrue(hdfs.exists("/evals/base/eval.json"));
    Shell.ok(List.of(Fixtures.launcher(), "average", "--model", hdfs.uri("/models/tiny"), "--run", hdfs.uri("/runs/base"), "--last", "3", "--out",
        hdfs.uri("/runs/base-avg")), env, dir.resolve("average.log"), 300);
    assertTrue(hdfs.exists("/runs/base-avg/adapter_model.safetensors"));
    Shell.ok(List.of(Fixtures.launcher(), "merge", "--model", hdfs.uri("/models/tiny"), "--adapter", hdfs.uri("/runs/base/adapter"), "--out",
        hdfs.uri("/merged")), env, dir.resolve("merge.log"), 300);
    assertTrue(hdfs.exists("/merged/model.safetensors") && hdfs.exists("/merged/config.json"));
  }

  @Test
  @Order(2)
  void theModelIsCopiedFromHdfsOncePerNodeAndTheCopyVerified() throws Exception {
    Path copy = weightsCopy(); // after the base run, eval, average and merge: still one copy
    var manifest = new ObjectMapper().readTree(copy.resolve(NodeCopy.MANIFEST).toFile());
    assertEquals(hdfs.uri("/models/tiny"), manifest.path("source").asText());
    String sha = null;
    for (var f : manifest.path("files")) {
      if (f.path("name").asText().equals("model.safetensors")) {
        sha = f.path("sha256").asText();
      }
    }
    assertEquals(NodeCopy.sha256(dir.resolve("model/model.safetensors")), sha, "the copy's recorded SHA-256 is the original file's");
    assertEquals(NodeCopy.sha256(dir.resolve("model/model.safetensors")), NodeCopy.sha256(copy.resolve("model.safetensors")));
    assertEquals(copiedAt, Files.getLastModifiedTime(copy.resolve(NodeCopy.MANIFEST)).toMillis(), "later commands reused the copy");
    // a copy cut short is not trusted: the next run copies the model again, and trains the same adapter
    Files.write(copy.resolve("model.safetensors"), java.util.Arrays.copyOf(Files.readAllBytes(copy.resolve("model.safetensors")), 100));
    Shell.ok(train("/runs/recopied"), env, dir.resolve("recopied.log"), 300);
    assertEquals(NodeCopy.sha256(dir.resolve("model/model.safetensors")), NodeCopy.sha256(weightsCopy().resolve("model.safetensors")), "copied again");
    assertSameAdapter("/runs/recopied", "trained on the copy taken again");
  }

  @Test
  @Order(3)
  void aDriverKilledWhileUploadingACheckpointResumesToTheUninterruptedAdapter() throws Exception {
    Shell.Result killed = Shell.run(train("/runs/kill", "--spark-conf", "spark.lorafleet.faults=kill-driver-in-publish@6"), env,
        dir.resolve("kill.log"), 300);
    assertEquals(137, killed.code(), "the driver died of SIGKILL; output:\n" + killed.output());
    assertTrue(hdfs.exists("/runs/kill/checkpoint-6"), "killed halfway through uploading checkpoint-6");
    assertFalse(hdfs.exists("/runs/kill/checkpoint-6/_committed.json"), "checkpoint-6 has no commit marker");
    assertTrue(hdfs.exists("/runs/kill/checkpoint-3/_committed.json"));
    // the half-uploaded checkpoint does not exist for its readers
    Shell.Result eval = Shell.ok(List.of(Fixtures.launcher(), "eval", "--model", hdfs.uri("/models/tiny"), "--data", hdfs.uri("/data"), "--split", "train", "--run",
        hdfs.uri("/runs/kill"), "--out", dir.resolve("eval-kill").toString()), env, dir.resolve("eval-kill.log"), 300);
    assertTrue(eval.output().contains("checkpoint-3") && !eval.output().contains("checkpoint-6"), eval.output());
    Fixtures.refusedThenResumedFromCheckpoint3(train("/runs/kill"), env, Files.createDirectories(dir.resolve("kill-logs")));
    assertSameAdapter("/runs/kill", "resumed after a driver SIGKILL mid-upload");
    assertEquals(IntStream.rangeClosed(1, STEPS).boxed().toList(), metricSteps("/runs/kill"), "one metrics line per step");
    assertTrue(hdfs.exists("/runs/kill/checkpoint-6/_committed.json"), "checkpoint-6 written again, whole");
    assertFalse(hdfs.exists("/runs/kill/.lorafleet.lock"));
  }

  @Test
  @Order(4)
  void aSecondDriverIsRefusedByTheLockOnHdfs() throws Exception {
    Path log = dir.resolve("locked.log");
    Process first = Shell.start(paused("/runs/locked", 4), env, log);
    awaitPause(first, "/runs/locked", 4);
    Shell.Result second = Shell.run(train("/runs/locked", "--resume"), env, dir.resolve("locked-second.log"), 300);
    assertNotEquals(0, second.code());
    assertTrue(second.output().contains("is locked by a running driver"), second.output());
    hdfs.touch("/runs/locked/_resume-4");
    assertEquals(0, finish(first, log).code(), Shell.read(log));
    assertSameAdapter("/runs/locked", "the first driver, undisturbed by the second");
  }

  @Test
  @Order(5)
  void aDataNodeStoppedMidRunDoesNotStopTheRun() throws Exception {
    Path log = dir.resolve("datanode.log");
    Process p = Shell.start(paused("/runs/datanode", 4), env, log);
    awaitPause(p, "/runs/datanode", 4);
    var stopped = hdfs.cluster.stopDataNode(0);
    assertTrue(stopped != null, "a DataNode stopped");
    hdfs.touch("/runs/datanode/_resume-4");
    Shell.Result r = finish(p, log);
    assertEquals(0, r.code(), r.output());
    assertSameAdapter("/runs/datanode", "with a DataNode stopped at step 4");
    assertTrue(hdfs.exists("/runs/datanode/checkpoint-12/_committed.json"));
  }

  @Test
  @Order(6)
  void safeModeFailsTheRunNamingThePathAndKeepsEarlierCheckpoints() throws Exception {
    Path log = dir.resolve("safemode.log");
    Process p = Shell.start(paused("/runs/safemode", 4), env, log);
    awaitPause(p, "/runs/safemode", 4);
    DistributedFileSystem dfs = hdfs.cluster.getFileSystem();
    hdfs.touch("/runs/safemode/_resume-4");
    dfs.setSafeMode(HdfsConstants.SafeModeAction.SAFEMODE_ENTER);
    Shell.Result r;
    try {
      r = finish(p, log);
    } finally {
      dfs.setSafeMode(HdfsConstants.SafeModeAction.SAFEMODE_LEAVE);
    }
    assertNotEquals(0, r.code(), "a run that cannot write its checkpoints never reports success; output:\n" + r.output());
    assertTrue(r.output().contains(hdfs.uri("/runs/safemode")) && r.output().toLowerCase().contains("safe mode"), r.output());
    assertFalse(r.output().contains("adapter written to"), r.output());
    assertTrue(hdfs.exists("/runs/safemode/checkpoint-3/_committed.json"), "the checkpoint before safe mode is kept");
    assertFalse(hdfs.exists("/runs/safemode/run_summary.json"));
    Shell.ok(train("/runs/safemode", "--resume"), env, dir.resolve("safemode-resume.log"), 300);
    assertSameAdapter("/runs/safemode", "resumed after safe mode");
  }

  @Test
  @Order(7)
  void aFullQuotaFailsTheRunNamingThePathAndKeepsEarlierCheckpoints() throws Exception {
    Path log = dir.resolve("quota.log");
    Process p = Shell.start(paused("/runs/quota", 4), env, log);
    awaitPause(p, "/runs/quota", 4);
    DistributedFileSystem dfs = hdfs.cluster.getFileSystem();
    hdfs.touch("/runs/quota/_resume-4");
    var used = dfs.getContentSummary(new org.apache.hadoop.fs.Path("/runs/quota")).getSpaceConsumed();
    dfs.setQuota(new org.apache.hadoop.fs.Path("/runs/quota"), HdfsConstants.QUOTA_DONT_SET, used + 1);
    Shell.Result r;
    try {
      r = finish(p, log);
    } finally {
      dfs.setQuota(new org.apache.hadoop.fs.Path("/runs/quota"), HdfsConstants.QUOTA_DONT_SET, HdfsConstants.QUOTA_RESET);
    }
    assertNotEquals(0, r.code(), "output:\n" + r.output());
    assertTrue(r.output().contains("/runs/quota") && r.output().contains("quota"), r.output());
    assertTrue(hdfs.exists("/runs/quota/checkpoint-3/_committed.json"), "the checkpoint before the quota filled is kept");
    assertFalse(hdfs.exists("/runs/quota/run_summary.json"));
  }
}
