/**
 * {@code lorafleet demo}: a small base pretrained on the spot ({@link io.lorafleet.driver.demo.Pretrain}), a text-to-SQL
 * task ({@link io.lorafleet.driver.demo.SqlTask}), and the end-to-end run over them
 * ({@link io.lorafleet.driver.demo.Demo}): prepare, train, average, evaluate, merge and generate on local Spark.
 *
 * <p>Imports: {@code datasets}, the driver's {@code eval}, {@code optim}, {@code report} and {@code train}, and the worker.
 */
package io.lorafleet.driver.demo;
