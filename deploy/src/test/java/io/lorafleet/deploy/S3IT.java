package io.lorafleet.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.hadoop.fs.FileSystem;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.io.TempDir;

/**
 * The pipeline on an S3-compatible object store (s3proxy on 127.0.0.1) through s3a://, as a user runs
 * it: checkpoints committed without a rename, a driver SIGKILLed between a checkpoint's uploads and
 * resumed bit-identical, the run lock by conditional create, and credentials kept out of every file.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class S3IT {
  @TempDir static Path dir;
  static S3Server s3;
  static FileSystem fs;
  static Map<String, String> env;
  static Map<String, float[]> uninterrupted;

  @BeforeAll
  static void start() throws Exception {
    s3 = S3Server.start(dir.resolve("s3"));
    fs = s3.fs();
    env = s3.env(dir.resolve("logs"));
    Fixtures.modelAndRecords(dir, env);
    fs.copyFromLocalFile(false, true, new org.apache.hadoop.fs.Path(dir.resolve("model").toUri()), new org.apache.hadoop.fs.Path(s3.uri("/models/tiny")));
    fs.copyFromLocalFile(false, true, new org.apache.hadoop.fs.Path(dir.resolve("d.jsonl").toUri()), new org.apache.hadoop.fs.Path(s3.uri("/raw/d.jsonl")));
    Shell.ok(List.of(Fixtures.launcher(), "prepare", "--model", s3.uri("/models/tiny"), "--input", s3.uri("/raw/d.jsonl"), "--out", s3.uri("/data"),
        "--shards", "2"), env, dir.resolve("prepare.log"), 300);
    Shell.ok(train("/runs/base"), env, dir.resolve("base.log"), 300);
    uninterrupted = adapter("/runs/base");
  }

  @AfterAll
  static void stop() throws Exception {
    if (s3 != null) {
      s3.close();
    }
  }

  static List<String> train(String out, String... extra) {
    return Fixtures.train(s3.uri("/models/tiny"), s3.uri("/data"), s3.uri(out), extra);
  }

  static boolean exists(String path) throws Exception {
    return fs.exists(new org.apache.hadoop.fs.Path(s3.uri(path)));
  }

  static Map<String, float[]> adapter(String run) throws Exception {
    Path local = Files.createDirectories(dir.resolve("fetched" + run.replace('/', '-')));
    fs.copyToLocalFile(false, new org.apache.hadoop.fs.Path(s3.uri(run + "/adapter")), new org.apache.hadoop.fs.Path(local.toUri()), true);
    return Fixtures.adapter(local);
  }

  static void assertSameAdapter(String run, String what) throws Exception {
    Fixtures.assertSameTensors(uninterrupted, adapter(run), what);
  }

  @Test
  @Order(1)
  void aDriverKilledBetweenACheckpointsUploadsResumesToTheUninterruptedAdapter() throws Exception {
    assertTrue(exists("/runs/base/checkpoint-12/_committed.json"));
    Shell.Result killed = Shell.run(train("/runs/kill", "--spark-conf", "spark.lorafleet.faults=kill-driver-in-publish@6"), env,
        dir.resolve("kill.log"), 300);
    assertEquals(137, killed.code(), "the driver died of SIGKILL; output:\n" + killed.output());
    assertTrue(exists("/runs/kill/checkpoint-6/adapter_config.json"), "killed after checkpoint-6's first upload");
    assertFalse(exists("/runs/kill/checkpoint-6/_committed.json"), "and before its commit marker");
    Shell.Result eval = Shell.ok(List.of(Fixtures.launcher(), "eval", "--model", s3.uri("/models/tiny"), "--data", s3.uri("/data"), "--split", "train", "--run",
        s3.uri("/runs/kill"), "--out", dir.resolve("eval-kill").toString()), env, dir.resolve("eval-kill.log"), 300);
    assertTrue(eval.output().contains("checkpoint-3") && !eval.output().contains("checkpoint-6"), eval.output());
    Fixtures.refusedThenResumedFromCheckpoint3(train("/runs/kill"), env, Files.createDirectories(dir.resolve("kill-logs")));
    assertSameAdapter("/runs/kill", "resumed after a driver SIGKILL between uploads");
    Shell.ok(List.of(Fixtures.launcher(), "average", "--model", s3.uri("/models/tiny"), "--run", s3.uri("/runs/kill"), "--last", "2", "--out",
        s3.uri("/runs/kill-avg")), env, dir.resolve("average.log"), 300);
    assertTrue(exists("/runs/kill-avg/adapter_model.safetensors"));
  }

  @Test
  @Order(2)
  void aSecondDriverIsRefusedByTheConditionalCreateOfTheLock() throws Exception {
    Path log = dir.resolve("locked.log");
    Process first = Shell.start(train("/runs/locked", "--spark-conf", "spark.lorafleet.faults=pause@4"), env, log);
    for (int i = 0; i < 3000 && !exists("/runs/locked/_paused-4"); i++) {
      assertTrue(first.isAlive(), "the run ended before it paused:\n" + Shell.read(log));
      Thread.sleep(100);
    }
    Shell.Result second = Shell.run(train("/runs/locked", "--resume"), env, dir.resolve("locked-second.log"), 300);
    assertNotEquals(0, second.code());
    assertTrue(second.output().contains("is locked by a running driver"), second.output());
    fs.create(new org.apache.hadoop.fs.Path(s3.uri("/runs/locked/_resume-4")), true).close();
    assertTrue(first.waitFor(300, java.util.concurrent.TimeUnit.SECONDS));
    assertEquals(0, first.exitValue(), Shell.read(log));
    assertSameAdapter("/runs/locked", "the first driver, undisturbed by the second");
  }

  @Test
  @Order(3)
  void aStoreThatIgnoresIfNoneMatchIsRefusedUnlessTheUserTakesOnTheSingleWriter() throws Exception {
    Shell.ok(List.of(Fixtures.launcher(), "prepare", "--model", dir.resolve("model").toString(), "--input", dir.resolve("d.jsonl").toString(), "--out",
        dir.resolve("data").toString(), "--shards", "2"), env, dir.resolve("prepare-local.log"), 300);
    try (S3Server lax = S3Server.ignoringIfNoneMatch(dir.resolve("s3-lax"))) {
      Map<String, String> laxEnv = lax.env(dir.resolve("logs"));
      List<String> cmd = new ArrayList<>(List.of(Fixtures.launcher(), "train", "--model", dir.resolve("model").toString(), "--data",
          dir.resolve("data").toString(), "--out", lax.uri("/runs/a"), "--workers", "2", "--steps", "4", "--global-batch", "4", "--micro-batch", "2",
          "--checkpoint-every", "2", "--target-modules", "q_proj,v_proj"));
      Shell.Result refused = Shell.run(cmd, laxEnv, dir.resolve("lax.log"), 300);
      assertEquals(1, refused.output().lines().filter(l -> l.startsWith("lorafleet train:")).count(), refused.output());
      assertNotEquals(0, refused.code());
      assertTrue(refused.output().contains("does not refuse a second exclusive create") && refused.output().contains("--no-lock"), refused.output());
      FileSystem laxFs = lax.fs();
      assertFalse(laxFs.exists(new org.apache.hadoop.fs.Path(lax.uri("/runs/a/.lorafleet.lock"))), "no lock was written");
      cmd.add("--no-lock");
      Shell.Result unlocked = Shell.ok(cmd, laxEnv, dir.resolve("lax-unlocked.log"), 300);
      assertTrue(laxFs.exists(new org.apache.hadoop.fs.Path(lax.uri("/runs/a/checkpoint-4/_committed.json"))), unlocked.output());
      assertTrue(laxFs.exists(new org.apache.hadoop.fs.Path(lax.uri("/runs/a/adapter/adapter_model.safetensors"))));
    }
  }

  @Test
  @Order(4)
  void theCredentialsAreInNoFileTheRunsWrote() throws Exception {
    List<String> leaks = new ArrayList<>();
    try (var files = Files.walk(dir)) {
      for (Path f : files.filter(Files::isRegularFile).toList()) {
        String name = f.getFileName().toString();
        if (name.equals("s3proxy.properties") || name.equals("s3proxy.log")) {
          continue; // the server's own configuration and log
        }
        if (new String(Files.readAllBytes(f), java.nio.charset.StandardCharsets.ISO_8859_1).contains(s3.secret)) {
          leaks.add(dir.relativize(f).toString());
        }
      }
    }
    assertTrue(leaks.isEmpty(), "the secret key appears in " + leaks);
    String config = new String(fs.open(new org.apache.hadoop.fs.Path(s3.uri("/runs/base/train_config.yaml"))).readAllBytes(),
        java.nio.charset.StandardCharsets.UTF_8);
    assertTrue(config.contains("fs.s3a.endpoint"), "the run's S3A settings are recorded:\n" + config);
  }
}
