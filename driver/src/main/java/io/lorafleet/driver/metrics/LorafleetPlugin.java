package io.lorafleet.driver.metrics;

import com.codahale.metrics.Gauge;
import org.apache.spark.api.plugin.DriverPlugin;
import org.apache.spark.api.plugin.ExecutorPlugin;
import org.apache.spark.api.plugin.PluginContext;
import org.apache.spark.api.plugin.SparkPlugin;

/**
 * lorafleet's training gauges in Spark's metrics system, through Spark's public plugin API: set
 * {@code spark.plugins=io.lorafleet.driver.metrics.LorafleetPlugin} and any configured sink
 * (PrometheusServlet, JMX, CSV, Graphite) exports {@link TrainingGauges#NAMES} under the source
 * {@code plugin.io.lorafleet.driver.metrics.LorafleetPlugin}.
 */
public final class LorafleetPlugin implements SparkPlugin {
  @Override
  public DriverPlugin driverPlugin() {
    return new DriverPlugin() {
      @Override
      public void registerMetrics(String appId, PluginContext ctx) {
        for (String name : TrainingGauges.NAMES) {
          ctx.metricRegistry().register(name, (Gauge<Double>) () -> TrainingGauges.value(name));
        }
        // a multi-run job's runs get gauges of their own, run.<name>.<gauge>, as each takes its first step
        TrainingGauges.registerWith(name -> {
          if (!ctx.metricRegistry().getNames().contains(name)) {
            ctx.metricRegistry().register(name, (Gauge<Double>) () -> TrainingGauges.value(name));
          }
        });
      }
    };
  }

  @Override
  public ExecutorPlugin executorPlugin() {
    return null; // the figures live on the driver, which owns the optimizer
  }
}
