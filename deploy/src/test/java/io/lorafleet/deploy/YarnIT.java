package io.lorafleet.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.yarn.conf.YarnConfiguration;
import org.apache.hadoop.yarn.server.MiniYARNCluster;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * train submitted to a real YARN (Hadoop's MiniYARNCluster: a ResourceManager and a NodeManager on
 * 127.0.0.1, whose containers are real JVMs) with the model, data and output on a mini HDFS, through
 * the launcher's spark-submit with HADOOP_CONF_DIR naming the clusters, as a user submits it.
 */
class YarnIT {
  static final String GPU = "yarn.io/gpu";
  @TempDir static Path dir;
  static MiniHdfs hdfs;
  static MiniYARNCluster yarn;
  static Map<String, String> env;
  static Map<String, float[]> local;

  @BeforeAll
  static void start() throws Exception {
    hdfs = MiniHdfs.start(dir.resolve("hdfs"), 1, 1);
    YarnConfiguration conf = new YarnConfiguration();
    conf.set("fs.defaultFS", hdfs.uri("/"));
    conf.setInt(YarnConfiguration.NM_PMEM_MB, 6144);
    conf.setInt(YarnConfiguration.YARN_MINICLUSTER_NM_PMEM_MB, 6144); // MiniYARNCluster's NodeManager reads this one (default 4096)
    conf.setInt(YarnConfiguration.NM_VCORES, 4);
    conf.setInt(YarnConfiguration.RM_SCHEDULER_MINIMUM_ALLOCATION_MB, 256);
    conf.setBoolean(YarnConfiguration.NM_PMEM_CHECK_ENABLED, false);
    conf.setBoolean(YarnConfiguration.NM_VMEM_CHECK_ENABLED, false);
    conf.setFloat(YarnConfiguration.NM_MAX_PER_DISK_UTILIZATION_PERCENTAGE, 100f);
    conf.set(YarnConfiguration.RM_ADDRESS, "127.0.0.1:0");
    conf.set("yarn.scheduler.capacity.root.queues", "default"); // the capacity scheduler's one queue, as capacity-scheduler.xml would give it
    conf.set("yarn.scheduler.capacity.root.default.capacity", "100");
    conf.set("yarn.scheduler.capacity.root.default.maximum-capacity", "100");
    conf.set("yarn.scheduler.capacity.maximum-am-resource-percent", "0.5");
    conf.set("yarn.scheduler.capacity.resource-calculator", "org.apache.hadoop.yarn.util.resource.DominantResourceCalculator");
    conf.set("yarn.resource-types", GPU); // the resource type YARN's GPU support declares: this node says it has 2
    conf.set("yarn.resource-types." + GPU + ".maximum-allocation", "2");
    conf.set("yarn.nodemanager.resource-type." + GPU, "2");
    yarn = new MiniYARNCluster("lorafleet-yarn", 1, 1, 1, 1);
    yarn.init(conf);
    yarn.start();
    assertTrue(yarn.waitForNodeManagersToConnect(60_000), "the NodeManager registered");
    Path confDir = Files.createDirectories(dir.resolve("hadoop-conf"));
    Configuration site = new Configuration(false);
    for (var e : yarn.getConfig()) {
      if (e.getKey().startsWith("yarn.") || e.getKey().equals("fs.defaultFS")) {
        site.set(e.getKey(), e.getValue());
      }
    }
    try (OutputStream o = Files.newOutputStream(confDir.resolve("yarn-site.xml"))) {
      site.writeXml(o);
    }
    Configuration types = new Configuration(false); // resource-types.xml, which YARN clients read too
    types.set("yarn.resource-types", GPU);
    try (OutputStream o = Files.newOutputStream(confDir.resolve("resource-types.xml"))) {
      types.writeXml(o);
    }
    Configuration core = new Configuration(false);
    core.set("fs.defaultFS", hdfs.uri("/"));
    try (OutputStream o = Files.newOutputStream(confDir.resolve("core-site.xml"))) {
      core.writeXml(o);
    }
    Map<String, String> plain = Map.of("SPARK_LOCAL_IP", "127.0.0.1", "LORAFLEET_LOG_DIR", dir.resolve("logs").toString());
    env = new HashMap<>(plain);
    env.put("HADOOP_CONF_DIR", confDir.toString()); // with it, a path without a scheme names the cluster's HDFS, as in Spark
    env.put("SPARK_HOME", sparkHome().toString());
    Fixtures.modelAndData(dir, plain);
    hdfs.put(dir.resolve("model"), "/models/tiny");
    hdfs.put(dir.resolve("data"), "/data");
    Shell.ok(Fixtures.train(hdfs.uri("/models/tiny"), hdfs.uri("/data"), dir.resolve("local").toString()), env, dir.resolve("local.log"), 300);
    local = Fixtures.adapter(dir.resolve("local"));
  }

  @AfterAll
  static void stop() {
    if (yarn != null) {
      yarn.stop();
    }
    if (hdfs != null) {
      hdfs.close();
    }
  }

  /**
   * The cluster's Spark distribution, SPARK_HOME/jars: the runtime classpath of Spark with YARN
   * support as Maven resolves it for src/test/spark-dist/pom.xml (Spark 4.2.0: Maven Central serves
   * no spark-yarn 4.1.x, and spark-yarn 4.0.1 and 4.2.0 are not binary compatible with spark-core
   * 4.1.1), linked in as a distribution lays its jars out.
   */
  static Path sparkHome() throws Exception {
    Path cpFile = Shell.ROOT.resolve("deploy/target/spark-dist.classpath");
    if (!Files.isRegularFile(cpFile)) {
      Shell.ok(List.of("mvn", "-B", "-q", "-f", Shell.ROOT.resolve("deploy/src/test/spark-dist/pom.xml").toString(), "dependency:build-classpath",
          "-Dmdep.outputFile=" + cpFile), Map.of(), dir.resolve("spark-dist.log"), 600);
    }
    Path jars = Files.createDirectories(dir.resolve("spark-home/jars"));
    int n = 0;
    for (String j : Files.readString(cpFile).trim().split(":")) {
      Path jar = Path.of(j);
      Files.createSymbolicLink(jars.resolve(String.format("%03d-%s", n++, jar.getFileName())), jar);
    }
    return dir.resolve("spark-home");
  }

  /** SPARK_HOME's jars, already on this node: the containers use them in place (local:), nothing is uploaded. */
  static String sparkJars() throws Exception {
    List<String> out = new ArrayList<>();
    try (var s = Files.list(Path.of(env.get("SPARK_HOME")).resolve("jars"))) {
      for (Path j : s.sorted().toList()) {
        out.add("local:" + j.toRealPath());
      }
    }
    return String.join(",", out);
  }

  static List<String> submit(String deployMode, String out, String... extra) throws Exception {
    String javaHome = System.getProperty("java.home");
    List<String> cmd = new ArrayList<>(List.of(Fixtures.launcher(), "submit", "--master", "yarn", "--deploy-mode", deployMode, "--num-executors",
        "2", "--executor-cores", "1", "--executor-memory", "1g", "--driver-memory", "1g", "--conf", "spark.yarn.jars=" + sparkJars(), "--conf",
        "spark.yarn.appMasterEnv.JAVA_HOME=" + javaHome, "--conf", "spark.executorEnv.JAVA_HOME=" + javaHome, "--conf", "spark.yarn.am.memory=512m",
        // no web UI: in client mode the ApplicationMaster's registration adds YARN's proxy filter to the UI's handlers from
        // another thread, and when that lands while the UI is starting, Spark 4.1.1's Jetty fails SparkContext's start with a
        // ConcurrentModificationException in ServletHandler.initialize (seen once in CI, 2026-12-07); these tests need no UI
        "--conf", "spark.ui.enabled=false", "--"));
    cmd.addAll(Fixtures.trainArgs(hdfs.uri("/models/tiny"), hdfs.uri("/data"), hdfs.uri(out), extra));
    return cmd;
  }

  @Test
  void trainInClientModeOnYarnGivesTheLocalRunsAdapter() throws Exception {
    Shell.Result r = Shell.ok(submit("client", "/runs/client"), env, dir.resolve("client.log"), 420);
    Path fetched = Files.createDirectories(dir.resolve("fetched-client"));
    hdfs.get("/runs/client/adapter", fetched);
    Fixtures.assertSameTensors(local, Fixtures.adapter(fetched), "YARN client mode against local[2]");
    assertEquals(0, r.code());
  }

  @Test
  void trainInClusterModeOnYarnGivesTheLocalRunsAdapter() throws Exception {
    // the driver runs in the ApplicationMaster's container; the submission waits for the application to end
    var before = java.util.Set.copyOf(yarn.getResourceManager().getRMContext().getRMApps().keySet());
    Shell.ok(submit("cluster", "/runs/cluster"), env, dir.resolve("cluster.log"), 600);
    var apps = yarn.getResourceManager().getRMContext().getRMApps().values().stream().filter(a -> !before.contains(a.getApplicationId())).toList();
    assertEquals(1, apps.size(), "one application submitted");
    assertEquals(org.apache.hadoop.yarn.api.records.FinalApplicationStatus.SUCCEEDED, apps.get(0).getFinalApplicationStatus(),
        "the ApplicationMaster reports the driver's success");
    assertEquals(1, apps.get(0).getAppAttempts().size(), "in one attempt: the driver returned from main instead of exiting the JVM under it");
    Path fetched = Files.createDirectories(dir.resolve("fetched-cluster"));
    hdfs.get("/runs/cluster/adapter", fetched);
    Fixtures.assertSameTensors(local, Fixtures.adapter(fetched), "YARN cluster mode against local[2]");
  }

  @Test
  void anExecutorContainerKilledMidRunIsRecoveredFromTheLastCheckpoint() throws Exception {
    // the worker of rank 1 SIGKILLs its own executor JVM (its YARN container) before step 7
    Shell.Result r = Shell.ok(submit("client", "/runs/killed", "--spark-conf", "spark.lorafleet.faults=kill@7:rank=1"), env,
        dir.resolve("killed.log"), 600);
    assertTrue(r.output().contains("relaunching from the last checkpoint (step 6)"), r.output());
    Path fetched = Files.createDirectories(dir.resolve("fetched-killed"));
    hdfs.get("/runs/killed/adapter", fetched);
    Fixtures.assertSameTensors(local, Fixtures.adapter(fetched), "YARN with an executor container killed at step 7");
  }

  @Test
  void theRecipesGpuSettingsBecomeYarnGpuRequests() throws Exception {
    List<String> cmd = submit("client", "/runs/gpu");
    int at = cmd.indexOf("--");
    cmd.addAll(at, List.of("--conf", "spark.executor.resource.gpu.amount=1", "--conf", "spark.task.resource.gpu.amount=1", "--conf",
        "spark.executor.resource.gpu.discoveryScript=" + Shell.ROOT.resolve("deploy/gpu/discover-gpus.sh")));
    Path log = dir.resolve("gpu.log");
    Process p = Shell.start(cmd, env, log);
    try {
      List<Long> gpus = List.of();
      for (int i = 0; i < 1200 && gpus.isEmpty(); i++) { // bounded: the requests appear once the ApplicationMaster registers
        assertTrue(p.isAlive(), "the submission ended before asking for executors:\n" + Shell.read(log));
        gpus = executorGpuRequests();
        Thread.sleep(100);
      }
      assertTrue(!gpus.isEmpty() && gpus.stream().allMatch(g -> g == 1), "each executor container asks YARN for one " + GPU + ": " + gpus
          + "; the submission's output:\n" + Shell.read(log));
    } finally {
      p.destroyForcibly().waitFor();
    }
  }

  /**
   * The yarn.io/gpu amount of every container the ResourceManager is asked for or has granted
   * (executors; the ApplicationMaster asks for none).
   */
  static List<Long> executorGpuRequests() {
    var rm = yarn.getResourceManager();
    var scheduler = (org.apache.hadoop.yarn.server.resourcemanager.scheduler.AbstractYarnScheduler<?, ?>) rm.getResourceScheduler();
    List<Long> out = new ArrayList<>();
    for (var app : rm.getRMContext().getRMApps().values()) {
      if (app.getCurrentAppAttempt() == null || scheduler.getApplicationAttempt(app.getCurrentAppAttempt().getAppAttemptId()) == null) {
        continue;
      }
      var attempt = scheduler.getApplicationAttempt(app.getCurrentAppAttempt().getAppAttemptId());
      for (var req : attempt.getAppSchedulingInfo().getAllResourceRequests()) {
        if (req.getNumContainers() > 0 && req.getCapability().getResourceValue(GPU) > 0) {
          out.add(req.getCapability().getResourceValue(GPU));
        }
      }
      for (var c : attempt.getLiveContainers()) {
        if (c.getAllocatedResource().getResourceValue(GPU) > 0) {
          out.add(c.getAllocatedResource().getResourceValue(GPU));
        }
      }
    }
    return out;
  }
}
