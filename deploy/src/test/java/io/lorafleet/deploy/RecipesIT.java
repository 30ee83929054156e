package io.lorafleet.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import com.fasterxml.jackson.dataformat.yaml.YAMLMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/** The Kubernetes and YARN recipes cannot run here; their syntax and cross-references are checked. */
class RecipesIT {
  static final Path DEPLOY = Shell.ROOT.resolve("deploy");

  static List<JsonNode> yamlDocs(Path f) throws Exception {
    List<JsonNode> docs = new ArrayList<>();
    try (var parser = new YAMLFactory().createParser(f.toFile())) {
      var it = new ObjectMapper(new YAMLFactory()).readValues(parser, JsonNode.class);
      while (it.hasNext()) {
        docs.add(it.next());
      }
    }
    return docs;
  }

  @Test
  void kubernetesManifestsParseAndRequestGpus() throws Exception {
    try (Stream<Path> s = Files.list(DEPLOY.resolve("kubernetes"))) {
      for (Path f : s.filter(p -> p.toString().endsWith(".yaml") && !p.getFileName().toString().equals("job.yaml")).toList()) {
        List<JsonNode> docs = yamlDocs(f);
        assertFalse(docs.isEmpty(), f + " holds no document");
        for (JsonNode d : docs) {
          assertTrue(d.hasNonNull("apiVersion") && d.hasNonNull("kind"), f + ": every manifest needs apiVersion and kind: " + d);
        }
      }
    }
    JsonNode exec = yamlDocs(DEPLOY.resolve("kubernetes/executor-pod-template.yaml")).get(0);
    assertEquals(1, exec.at("/spec/containers/0/resources/limits/nvidia.com~1gpu").asInt(), "executor pods request one GPU");
    JsonNode driver = yamlDocs(DEPLOY.resolve("kubernetes/driver-pod-template.yaml")).get(0);
    assertEquals("lorafleet", driver.at("/spec/serviceAccountName").asText());
    var rbacKinds = yamlDocs(DEPLOY.resolve("kubernetes/rbac.yaml")).stream().map(d -> d.get("kind").asText()).toList();
    assertEquals(List.of("ServiceAccount", "Role", "RoleBinding"), rbacKinds);
    assertTrue(Files.readString(DEPLOY.resolve("kubernetes/submit.sh")).contains("serviceAccountName=lorafleet"));
  }

  @Test
  void dockerfileSourcesExistOrAreBuilt() throws Exception {
    String build = Files.readString(DEPLOY.resolve("kubernetes/build-image.sh"));
    for (String line : Files.readAllLines(DEPLOY.resolve("kubernetes/Dockerfile"))) {
      if (!line.startsWith("COPY ")) {
        continue;
      }
      String src = line.split("\\s+")[1].replaceAll("/$", "");
      boolean inRepo = Files.exists(DEPLOY.resolve("kubernetes").resolve(src)) || Files.exists(DEPLOY.resolve("gpu").resolve(src));
      boolean built = build.contains("\"$ctx/" + src);
      assertTrue(inRepo || built, "Dockerfile copies " + src + " but neither the repository nor build-image.sh provides it");
      if (inRepo) {
        assertTrue(build.contains(src), "build-image.sh must put " + src + " into the build context");
      }
    }
  }

  @Test
  void jobFilesAreValidTrainJobFiles() throws Exception {
    for (String f : List.of("kubernetes/job.yaml", "yarn/job.yaml")) {
      JsonNode job = new YAMLMapper().readTree(DEPLOY.resolve(f).toFile());
      for (String field : List.of("model", "data", "out", "workers")) {
        assertTrue(job.hasNonNull(field), f + " lacks " + field);
      }
      assertEquals(1, job.at("/spark/spark.task.resource.gpu.amount").asInt(), f);
      // the real check: the CLI accepts the file (its fields are train's flags)
      Shell.Result r = Shell.run(List.of(Fixtures.launcher(), "train", "--config", DEPLOY.resolve(f).toString(), "--help"), Map.of(),
          Files.createTempFile("job", ".log"), 120);
      assertEquals(0, r.code(), f + ": " + r.output());
    }
  }

  @Test
  void shellScriptsParse() throws Exception {
    List<Path> scripts = new ArrayList<>(List.of(DEPLOY.resolve("bin/lorafleet")));
    for (String d : List.of("standalone", "kubernetes", "yarn", "gpu")) {
      try (Stream<Path> s = Files.list(DEPLOY.resolve(d))) {
        scripts.addAll(s.filter(p -> p.toString().endsWith(".sh")).toList());
      }
    }
    for (Path p : scripts) {
      Shell.Result r = Shell.run(List.of("bash", "-n", p.toString()), Map.of(), Files.createTempFile("bashn", ".log"), 30);
      assertEquals(0, r.code(), p + ": " + r.output());
      assertTrue(Files.isExecutable(p), p + " must be executable");
    }
  }

  @Test
  void theRepositoryHoldsSourcesNotCommandOutputs() throws Exception {
    Shell.Result r = Shell.run(List.of("git", "ls-files"), Map.of(), Files.createTempFile("ls-files", ".log"), 60);
    org.junit.jupiter.api.Assumptions.assumeTrue(r.code() == 0, "not a git checkout");
    List<String> files = r.output().lines().filter(l -> !l.isBlank()).toList();
    List<String> allowedTop = List.of("pom.xml", "README.md", "driver", "worker", "datasets", "deploy", ".ci", ".gitignore", ".gitattributes",
        ".editorconfig");
    for (String f : files) {
      String top = f.contains("/") ? f.substring(0, f.indexOf('/')) : f;
      assertTrue(allowedTop.contains(top), "top-level entry " + top + " (" + f + ") is not part of the layout");
      assertFalse(f.contains("__pycache__") || f.endsWith(".pyc") || f.contains("/target/") || f.endsWith(".log"), "generated file committed: " + f);
    }
  }
}
