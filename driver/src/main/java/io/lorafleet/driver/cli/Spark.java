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
      b.master("local[" + localThreads + "]").config("spark.ui.enabled", "false").config("spark.driver.host", "127.0.0.1");
    }
    return b.getOrCreate();
  }
}
