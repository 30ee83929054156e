/**
 * Training metrics for Spark's metrics system: a driver plugin ({@link io.lorafleet.driver.metrics.LorafleetPlugin}) that
 * registers the gauges a run updates ({@link io.lorafleet.driver.metrics.TrainingGauges}), so Spark's sinks (Prometheus
 * among them) export them. Imports nothing of lorafleet.
 */
package io.lorafleet.driver.metrics;
