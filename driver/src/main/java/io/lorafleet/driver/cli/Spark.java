package io.lorafleet.driver.cli;

import org.apache.spark.sql.SparkSession;

/** The one SparkSession of a CLI run: the cluster's when launched by spark-submit, else embedded local[N]. */
final class Spark {
  private Spark() {}

  static SparkSession session(String app, int localThreads) {
    return session(app, localThreads, java.util.Map.of());
  }

  /** With extra Spark confs (a job file's 'spark' map, or --spark-conf); a spark.master among them wins over local[N]. */
  static SparkSession session(String app, int localThreads, java.util.Map<String, String> confs) {
    SparkSession.Builder b = SparkSession.builder().appName("lorafleet " + app);
    confs.forEach(b::config);
    if (System.getProperty("spark.master") == null && !confs.containsKey("spark.master")) {
      b.master("local[" + localThreads + "]").config("spark.ui.enabled", confs.getOrDefault("spark.ui.enabled", "false"))
          .config("spark.driver.host", "127.0.0.1");
    }
    return b.getOrCreate();
  }

  /**
   * --spark-ui: the web UI on, lorafleet's metrics plugin loaded, and Spark's PrometheusServlet sink
   * at /metrics/prometheus under a stable namespace ("lorafleet"), unless the confs say otherwise.
   */
  static void withUiAndMetrics(java.util.Map<String, String> confs) {
    confs.putIfAbsent("spark.ui.enabled", "true");
    confs.merge("spark.plugins", io.lorafleet.driver.metrics.LorafleetPlugin.class.getName(), (a, b) -> a.contains(b) ? a : a + "," + b);
    confs.putIfAbsent("spark.metrics.namespace", "lorafleet");
    confs.putIfAbsent("spark.metrics.conf.*.sink.prometheusServlet.class", "org.apache.spark.metrics.sink.PrometheusServlet");
    confs.putIfAbsent("spark.metrics.conf.*.sink.prometheusServlet.path", "/metrics/prometheus");
  }
}
