package io.lorafleet.datasets.fs;

import java.net.URI;
import org.apache.hadoop.conf.Configuration;

/** The Hadoop configuration of this JVM, with the application's spark.hadoop.* settings, and what a URI is. */
public final class HadoopConf {
  private HadoopConf() {}

  /** On a driver or an executor: Hadoop's defaults plus the running application's spark.hadoop.* settings; elsewhere Hadoop's defaults. */
  public static Configuration current() {
    org.apache.spark.SparkEnv env = org.apache.spark.SparkEnv.get();
    return env == null ? new Configuration() : org.apache.spark.deploy.SparkHadoopUtil.get().newConfiguration(env.conf());
  }

  /** True for a URI with a scheme (hdfs://, s3a://, file:…), not a plain path nor a Windows drive letter. */
  public static boolean remote(String location) {
    try {
      String scheme = new URI(location.replace(" ", "%20")).getScheme();
      return scheme != null && scheme.length() > 1;
    } catch (java.net.URISyntaxException e) {
      return false;
    }
  }
}
