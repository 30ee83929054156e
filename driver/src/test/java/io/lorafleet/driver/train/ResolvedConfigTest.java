package io.lorafleet.driver.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import org.apache.spark.SparkConf;
import org.junit.jupiter.api.Test;

class ResolvedConfigTest {
  @Test
  void everyValueIsWrittenAndSecretsAreRedacted() throws Exception {
    TrainConfig cfg = new TrainConfig("/models/m", "/data/d", "/runs/r", "q_proj,v_proj", 8, 16, 0.05, 2, 100, 8, 4, 2e-4, 10, "cosine", "adamw", 0.01,
        1.0, 10, 5, 7, 120_000, 3, false, "", 0, 64, 0, "svd");
    SparkConf conf = new SparkConf(false).set("spark.executor.memory", "4g").set("spark.hadoop.fs.s3a.secret.key", "hunter2")
        .set("spark.executorEnv.HF", "token=abc");
    String yaml = ResolvedConfig.yaml(cfg, conf);
    JsonNode n = new ObjectMapper(new YAMLFactory()).readTree(yaml);
    assertEquals(2e-4, n.at("/train/lr").asDouble());
    assertEquals("cosine", n.at("/train/schedule").asText());
    assertEquals(0.1, n.at("/train/loraOptions/vera/dInitial").asDouble(), "defaults are written too");
    assertEquals("fp32", n.at("/train/gradTransport").asText());
    assertEquals("4g", n.at("/spark/spark.executor.memory").asText());
    assertEquals(ResolvedConfig.REDACTED, n.at("/spark/spark.hadoop.fs.s3a.secret.key").asText());
    assertEquals(ResolvedConfig.REDACTED, n.at("/spark/spark.executorEnv.HF").asText(), "a secret in the value is redacted too");
    assertFalse(yaml.contains("hunter2") || yaml.contains("abc"), yaml);
    assertTrue(yaml.startsWith("# the resolved configuration"));
  }
}
