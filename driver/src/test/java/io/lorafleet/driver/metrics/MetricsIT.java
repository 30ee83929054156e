package io.lorafleet.driver.metrics;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.lorafleet.datasets.prepare.Prepare;
import io.lorafleet.datasets.prepare.PrepareOptions;
import io.lorafleet.datasets.prepare.RecordFormat;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * lorafleet train --spark-ui, paused at step 3 through the fault plan's pause hook (not by timing):
 * Spark's PrometheusServlet serves lorafleet's gauges, which parse as Prometheus text and equal
 * that step's metrics.jsonl line.
 */
class MetricsIT {
  @TempDir Path dir;

  /** The tiny model and its prepared data under dir; returns the model. */
  private Path tinyJob() throws Exception {
    io.lorafleet.driver.TinyJob.write(dir, 2, 16);
    Path model = dir.resolve("model");
    SparkSession prep = SparkSession.builder().master("local[2]").config("spark.ui.enabled", "false").config("spark.driver.host", "127.0.0.1")
        .getOrCreate();
    Prepare.run(prep, PrepareOptions.builder(List.of(dir.resolve("d.jsonl").toString()), model.toString(), dir.resolve("data").toString())
        .maxSeqLen(16).truncation("drop").seed(1).shards(2).maxBadFraction(0).build());
    prep.stop();
    return model;
  }

  /** Once the run has reached the pause hook ({@code paused} appears), Spark's /metrics/prometheus page; a failed run ends the wait. */
  private static HttpResponse<String> scrapeWhenPaused(Path paused, CompletableFuture<Integer> train) throws Exception {
    while (!Files.exists(paused)) {
      if (train.isDone()) {
        throw new AssertionError("train ended before the pause, exit code " + train.get());
      }
      Thread.sleep(50);
    }
    String ui = SparkSession.getDefaultSession().get().sparkContext().uiWebUrl().get();
    return HttpClient.newBuilder().followRedirects(HttpClient.Redirect.NORMAL).build().send(HttpRequest.newBuilder(URI.create(ui + "/metrics/prometheus"))
        .build(), HttpResponse.BodyHandlers.ofString());
  }

  @Test
  void theTrainingGaugesAreScrapedFromARunningTrain() throws Exception {
    Path model = tinyJob();
    Path run = dir.resolve("run");
    CompletableFuture<Integer> train = CompletableFuture.supplyAsync(() -> io.lorafleet.driver.cli.Main.execute("train", "--model", model.toString(),
        "--data", dir.resolve("data").toString(), "--out", run.toString(), "--workers", "1", "--steps", "4", "--global-batch", "2", "--micro-batch", "2",
        "--checkpoint-every", "2", "--target-modules", "q_proj,v_proj", "--spark-ui", "--spark-conf", "spark.ui.port=0", "--spark-conf",
        "spark.lorafleet.faults=pause@2"));
    HttpResponse<String> r = scrapeWhenPaused(run.resolve("_paused-2"), train);
    assertEquals(200, r.statusCode());
    List<PrometheusText.Sample> samples = PrometheusText.parse(r.body());
    Files.writeString(run.resolve("_resume-2"), "");
    assertEquals(0, train.get(300, TimeUnit.SECONDS));

    JsonNode step3 = new ObjectMapper().readTree(Files.readAllLines(run.resolve("metrics.jsonl")).get(2));
    assertEquals(3, step3.get("step").asInt());
    Map<String, Double> want = Map.of("step", 3.0, "loss", step3.get("loss").asDouble(), "learning_rate", step3.get("lr").asDouble(), "grad_norm",
        step3.get("grad_norm").asDouble());
    for (String g : TrainingGauges.NAMES) {
      List<PrometheusText.Sample> s = samples.stream().filter(x -> x.name().endsWith("LorafleetPlugin_" + g + "_Value")).toList();
      assertEquals(1, s.size(), g + " among " + samples.size() + " samples:\n" + r.body());
      assertEquals("gauges", s.get(0).labels().get("type"));
      if (want.containsKey(g)) {
        assertEquals(want.get(g), s.get(0).value(), 1e-12 * Math.abs(want.get(g)), g);
      }
    }
    double age = samples.stream().filter(x -> x.name().endsWith("LorafleetPlugin_checkpoint_age_seconds_Value")).findFirst().orElseThrow().value();
    assertTrue(age >= 0 || Double.isNaN(age), "NaN until checkpoint-2 (written in the background) is published, then its age: " + age);
    assertTrue(samples.stream().anyMatch(x -> x.name().startsWith("metrics_lorafleet_driver_")), "the namespace is lorafleet");
  }

  /** A multi-run job: each run has the gauges under run.<name>., registered as it takes its first step, each with its own step. */
  @Test
  void eachRunOfAMultiRunJobHasGaugesOfItsOwn() throws Exception {
    Path model = tinyJob();
    Path job = dir.resolve("job.yaml");
    Files.writeString(job, "runs:\n  - {name: a, lr: 0.01}\n  - {name: b, lr: 0.001}\n");
    Path out = dir.resolve("job");
    CompletableFuture<Integer> train = CompletableFuture.supplyAsync(() -> io.lorafleet.driver.cli.Main.execute("train", "--config", job.toString(),
        "--model", model.toString(), "--data", dir.resolve("data").toString(), "--out", out.toString(), "--workers", "1", "--steps", "4",
        "--global-batch", "2", "--micro-batch", "2", "--checkpoint-every", "2", "--target-modules", "q_proj,v_proj", "--spark-ui", "--spark-conf",
        "spark.ui.port=0", "--spark-conf", "spark.lorafleet.faults=pause@2"));
    // run a has recorded step 3; run b, next in the tick, is still at step 2
    HttpResponse<String> r = scrapeWhenPaused(out.resolve("runs/a/_paused-2"), train);
    List<PrometheusText.Sample> samples = PrometheusText.parse(r.body());
    Files.writeString(out.resolve("runs/a/_resume-2"), "");
    Files.writeString(out.resolve("runs/b/_resume-2"), "");
    assertEquals(0, train.get(300, TimeUnit.SECONDS));
    for (String run : List.of("a", "b")) {
      for (String g : TrainingGauges.NAMES) {
        assertEquals(1, samples.stream().filter(x -> x.name().endsWith("LorafleetPlugin_run_" + run + "_" + g + "_Value")).count(), run + " " + g + ":\n" + r.body());
      }
    }
    double stepA = samples.stream().filter(x -> x.name().endsWith("LorafleetPlugin_run_a_step_Value")).findFirst().orElseThrow().value();
    double stepB = samples.stream().filter(x -> x.name().endsWith("LorafleetPlugin_run_b_step_Value")).findFirst().orElseThrow().value();
    assertEquals(3, stepA);
    assertEquals(2, stepB);
    JsonNode b2 = new ObjectMapper().readTree(Files.readAllLines(out.resolve("runs/b/metrics.jsonl")).get(1));
    assertEquals(b2.get("loss").asDouble(), samples.stream().filter(x -> x.name().endsWith("LorafleetPlugin_run_b_loss_Value")).findFirst().orElseThrow()
        .value(), 1e-12);
  }
}
