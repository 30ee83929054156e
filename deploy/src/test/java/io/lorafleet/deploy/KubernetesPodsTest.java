package io.lorafleet.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.EnvVar;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.Quantity;
import io.fabric8.kubernetes.api.model.Volume;
import io.fabric8.kubernetes.api.model.VolumeMount;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.spark.SparkConf;
import org.apache.spark.deploy.k8s.KubernetesConf;
import org.apache.spark.deploy.k8s.KubernetesDriverSpec;
import org.apache.spark.deploy.k8s.SparkPod;
import org.apache.spark.deploy.k8s.submit.JavaMainAppResource;
import org.apache.spark.deploy.k8s.submit.KubernetesDriverBuilder;
import org.apache.spark.resource.ResourceProfile;
import org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBuilder;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import scala.Option;

/**
 * The pods {@code deploy/kubernetes/submit.sh} would have Kubernetes run, rendered by Spark's own
 * Kubernetes feature steps (the code spark-submit --master k8s:// and the driver's scheduler run)
 * from the recipe's spark-submit settings, its pod templates and its job file's Spark settings. No
 * cluster is contacted: the client only parses the templates.
 */
class KubernetesPodsTest {
  static final Path RECIPE = Shell.ROOT.resolve("deploy/kubernetes");
  static final String IMAGE = "registry.example.com/lorafleet:0.1.0";
  static KubernetesClient client;
  static SparkConf conf;

  @BeforeAll
  static void recipe() throws Exception {
    client = new KubernetesClientBuilder().build();
    conf = new SparkConf(false).setMaster("k8s://https://127.0.0.1:6443").setAppName("lorafleet").set("spark.submit.deployMode", "cluster");
    submitSettings().forEach(conf::set);
  }

  @AfterAll
  static void close() {
    client.close();
  }

  /** The --conf settings submit.sh passes to spark-submit, with its variables at the values a user's call gives them. */
  static Map<String, String> submitSettings() throws Exception {
    Map<String, String> vars = Map.of("namespace", "lorafleet", "image", IMAGE, "here", RECIPE.toString());
    Map<String, String> out = new LinkedHashMap<>();
    Matcher m = Pattern.compile("--conf ([\\w.\\-]+)=\"?([^\"\\s]+)\"?").matcher(Files.readString(RECIPE.resolve("submit.sh")));
    while (m.find()) {
      String v = m.group(2);
      for (var e : vars.entrySet()) {
        v = v.replace("$" + e.getKey(), e.getValue());
      }
      assertTrue(!v.contains("$"), "an unknown variable in submit.sh's --conf " + m.group(1) + "=" + m.group(2));
      out.put(m.group(1), v);
    }
    return out;
  }

  /** The Spark settings of the recipe's job file, which the driver applies when it starts. */
  static Map<String, String> jobSettings() throws Exception {
    JsonNode job = new ObjectMapper(new YAMLFactory()).readTree(RECIPE.resolve("job.yaml").toFile());
    Map<String, String> out = new LinkedHashMap<>();
    job.path("spark").fields().forEachRemaining(e -> out.put(e.getKey(), e.getValue().asText()));
    return out;
  }

  static Container container(SparkPod pod) {
    return pod.container();
  }

  static Map<String, String> env(Container c) {
    Map<String, String> out = new LinkedHashMap<>();
    for (EnvVar e : c.getEnv()) {
      out.put(e.getName(), e.getValue());
    }
    return out;
  }

  static Map<String, String> mounts(Container c) {
    Map<String, String> out = new LinkedHashMap<>();
    for (VolumeMount m : c.getVolumeMounts()) {
      out.put(m.getName(), m.getMountPath());
    }
    return out;
  }

  static Volume volume(Pod pod, String name) {
    return pod.getSpec().getVolumes().stream().filter(v -> v.getName().equals(name)).findFirst()
        .orElseThrow(() -> new AssertionError("no volume " + name + " in " + pod.getSpec().getVolumes()));
  }

  @Test
  void theDriverPodRunsTheJobFromTheImageWithTheSharedVolumeAndNoGpu() throws Exception {
    var driverConf = KubernetesConf.createDriverConf(conf, "spark-lorafleet-test",
        new JavaMainAppResource(Option.apply("local:///opt/lorafleet/lorafleet.jar")), "io.lorafleet.driver.cli.Main",
        new String[] {"train", "--config", "/etc/lorafleet/job.yaml"}, Option.empty());
    KubernetesDriverSpec spec = new KubernetesDriverBuilder().buildFromFeatures(driverConf, client);
    Pod pod = spec.pod().pod();
    Container c = container(spec.pod());
    assertEquals("lorafleet", driverConf.namespace(), "the namespace the pod is created in");
    assertEquals("lorafleet", pod.getSpec().getServiceAccountName(), "the service account rbac.yaml grants");
    assertEquals(IMAGE, c.getImage());
    assertEquals("driver", pod.getMetadata().getLabels().get("role"), "the template's labels are kept");
    assertTrue(c.getArgs().contains("io.lorafleet.driver.cli.Main") && c.getArgs().containsAll(List.of("train", "--config", "/etc/lorafleet/job.yaml")),
        "the driver runs lorafleet's main with the job file: " + c.getArgs());
    assertTrue(c.getArgs().contains("local:///opt/lorafleet/lorafleet.jar"), c.getArgs().toString());
    assertEquals(Map.of("shared", "/data", "job", "/etc/lorafleet"), filter(mounts(c), "shared", "job"));
    assertEquals("lorafleet-shared", volume(pod, "shared").getPersistentVolumeClaim().getClaimName());
    assertEquals("lorafleet-job", volume(pod, "job").getConfigMap().getName());
    Map<String, Quantity> limits = c.getResources().getLimits();
    assertTrue(limits == null || !limits.containsKey("nvidia.com/gpu"), "the driver asks for no GPU: " + limits);
    assertEquals(new Quantity("2"), c.getResources().getRequests().get("cpu"), "spark.driver.cores: " + c.getResources());
    assertEquals(new Quantity("7884Mi"), c.getResources().getRequests().get("memory"), "spark.driver.memory 7g and 10% overhead: " + c.getResources());
    assertTrue(env(c).containsKey("SPARK_DRIVER_BIND_ADDRESS"), env(c).toString());
  }

  @Test
  void anExecutorPodAsksForOneNvidiaGpuAndMountsTheSharedVolume() throws Exception {
    SparkConf executorConf = conf.clone();
    jobSettings().forEach(executorConf::set);
    executorConf.set("spark.driver.host", "lorafleet-driver-svc.lorafleet.svc").set("spark.driver.port", "7078").set("spark.app.id", "spark-lorafleet-test");
    var spec = new KubernetesExecutorBuilder().buildFromFeatures(KubernetesConf.createExecutorConf(executorConf, "1", "spark-lorafleet-test",
        Option.empty(), ResourceProfile.DEFAULT_RESOURCE_PROFILE_ID()), new org.apache.spark.SecurityManager(executorConf, Option.empty(),
            org.apache.spark.internal.config.package$.MODULE$.AUTH_SECRET_FILE_EXECUTOR()), client,
        org.apache.spark.resource.ResourceProfile$.MODULE$.getOrCreateDefaultProfile(executorConf));
    Pod pod = spec.pod().pod();
    Container c = container(spec.pod());
    assertEquals(IMAGE, c.getImage());
    assertEquals(new Quantity("1"), c.getResources().getLimits().get("nvidia.com/gpu"),
        "one GPU a worker, from spark.executor.resource.gpu.amount and .vendor: " + c.getResources());
    assertTrue(pod.getSpec().getTolerations().stream().anyMatch(t -> t.getKey().equals("nvidia.com/gpu")), "scheduled onto GPU nodes");
    assertEquals("/data", mounts(c).get("shared"));
    assertEquals("lorafleet-shared", volume(pod, "shared").getPersistentVolumeClaim().getClaimName());
    Map<String, String> env = env(c);
    assertEquals("1", env.get("SPARK_EXECUTOR_ID"));
    assertEquals("4", env.get("SPARK_EXECUTOR_CORES"), "spark.executor.cores of the job file");
    assertTrue(env.get("SPARK_DRIVER_URL").contains("lorafleet-driver-svc.lorafleet.svc:7078"), env.toString());
    assertTrue(c.getResources().getRequests().get("memory").toString().startsWith("2"), "24g and the overhead: " + c.getResources());
  }

  private static Map<String, String> filter(Map<String, String> m, String... keys) {
    Map<String, String> out = new LinkedHashMap<>();
    for (String k : keys) {
      if (m.containsKey(k)) {
        out.put(k, m.get(k));
      }
    }
    return out;
  }
}
