package io.lorafleet.driver.cli;

import org.apache.spark.sql.SparkSession;

/** The one SparkSession of a CLI run: the cluster's when launched by spark-submit, else embedded local[N]. */
final class Spark {
  private Spark() {}

  static SparkSession session(String app, int localThreads) {
    SparkSession.Builder b = SparkSession.builder().appName("lorafleet " + app);
    if (System.getProperty("spark.master") == null) {
      b.master("local[" + localThreads + "]").config("spark.ui.enabled", "false").config("spark.driver.host", "127.0.0.1");
    }
    return b.getOrCreate();
  }
}
