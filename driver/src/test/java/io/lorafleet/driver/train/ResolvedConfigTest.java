package io.lorafleet.driver.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import io.lorafleet.worker.lora.LoraConfig;
import org.apache.spark.SparkConf;
import org.junit.jupiter.api.Test;

class ResolvedConfigTest {
  @Test
  void everyValueIsWrittenAndSecretsAreRedacted() throws Exception {
    TrainConfig cfg = TrainConfig.builder("/models/m", "/data/d", "/runs/r")
        .tuner(LoraConfig.ofTargetModules(8, 16, "q_proj,v_proj").withDropout(0.05)).lr(2e-4).warmup(10).weightDecay(0.01).seed(7).build();
    SparkConf conf = new SparkConf(false).set("spark.executor.memory", "4g").set("spark.hadoop.fs.s3a.secret.key", "hunter2")
        .set("spark.executorEnv.HF", "token=abc");
    String yaml = ResolvedConfig.yaml(cfg, conf);
    JsonNode n = new ObjectMapper(new YAMLFactory()).readTree(yaml);
    assertEquals(2e-4, n.at("/train/optimization/lr").asDouble());
    assertEquals("cosine", n.at("/train/optimization/schedule").asText());
    assertEquals("lora", n.at("/train/tuner/method/name").asText(), "the method is written by name");
    assertEquals(0.05, n.at("/train/tuner/loraDropout").asDouble());
    assertEquals(0.9, n.at("/train/optimization/adamBeta1").asDouble(), "defaults are written too");
    assertEquals("fp32", n.at("/train/channel/transport").asText());
    assertEquals("4g", n.at("/spark/spark.executor.memory").asText());
    assertEquals(ResolvedConfig.REDACTED, n.at("/spark/spark.hadoop.fs.s3a.secret.key").asText());
    assertEquals(ResolvedConfig.REDACTED, n.at("/spark/spark.executorEnv.HF").asText(), "a secret in the value is redacted too");
    assertFalse(yaml.contains("hunter2") || yaml.contains("abc"), yaml);
    assertTrue(yaml.startsWith("# the resolved configuration"));
  }

  /** eval --run reads the base's quantization back: from this layout, and from runs written before the settings were grouped. */
  @Test
  void theQuantizationIsReadBackInEitherLayout(@org.junit.jupiter.api.io.TempDir java.nio.file.Path tmp) throws Exception {
    assertTrue(ResolvedConfig.quantization(tmp.toString(), new org.apache.hadoop.conf.Configuration()).isEmpty(), "no train_config.yaml");
    TrainConfig nf4 = TrainConfig.builder("/models/m", "/data/d", "/runs/r").quantize(io.lorafleet.worker.quant.Quantization.NF4).build();
    java.nio.file.Files.writeString(tmp.resolve(ResolvedConfig.FILE), ResolvedConfig.yaml(nf4, new SparkConf(false)));
    assertEquals(io.lorafleet.worker.quant.Quantization.NF4, ResolvedConfig.quantization(tmp.toString(), new org.apache.hadoop.conf.Configuration()).orElseThrow());
    java.nio.file.Files.writeString(tmp.resolve(ResolvedConfig.FILE), "train:\n  quantize:\n    method: nf4\n    doubleQuant: false\n");
    assertEquals(io.lorafleet.worker.quant.Quantization.of("nf4", false), ResolvedConfig.quantization(tmp.toString(), new org.apache.hadoop.conf.Configuration()).orElseThrow());
  }
}
