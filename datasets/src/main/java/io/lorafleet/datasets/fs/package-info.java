/**
 * Files named by Hadoop URIs (hdfs://, s3a://, file://…) as the product reads them: a remote
 * directory made local on this node, once, verified ({@link io.lorafleet.datasets.fs.NodeCopy}),
 * and the Hadoop configuration of the JVM asking, driver or executor
 * ({@link io.lorafleet.datasets.fs.HadoopConf}).
 */
package io.lorafleet.datasets.fs;
