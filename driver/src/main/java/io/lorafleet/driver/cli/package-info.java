/**
 * The command line ({@link io.lorafleet.driver.cli.Main}): one picocli command a class, each turning its flags into the
 * settings of the package that does the work, plus job files with transformers' and Axolotl's aliases
 * ({@link io.lorafleet.driver.cli.JobFile}), the local Spark session ({@link io.lorafleet.driver.cli.Spark}) and the
 * output-directory policy ({@link io.lorafleet.driver.cli.Outputs}). The one place that may exit the process.
 *
 * <p>Imports every other package; nothing imports it.
 */
package io.lorafleet.driver.cli;
