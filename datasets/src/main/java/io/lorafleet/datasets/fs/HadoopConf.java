package io.lorafleet.datasets.fs;

import java.net.URI;
import org.apache.hadoop.conf.Configuration;

/** The Hadoop configuration of this JVM, with the application's spark.hadoop.* settings, and what a URI is. */
public final class HadoopConf {
  private HadoopConf() {}

  /**
   * Hadoop's defaults (core-site.xml and the like on the classpath) plus, as Spark builds it, the
   * spark.hadoop.* settings and the AWS credentials and endpoint of the environment
   * (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_ENDPOINT_URL): those of the
   * running application on a driver or an executor, else those of this JVM's system properties
   * (a command that starts no Spark, run with -Dspark.hadoop.fs.s3a.endpoint=… say).
   */
  public static Configuration current() {
    org.apache.spark.SparkEnv env = org.apache.spark.SparkEnv.get();
    return org.apache.spark.deploy.SparkHadoopUtil.get().newConfiguration(env == null ? new org.apache.spark.SparkConf() : env.conf());
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
