/**
 * What a person reads: progress lines on the console ({@link io.lorafleet.driver.report.Progress}) and SVG plots of loss
 * curves ({@link io.lorafleet.driver.report.SvgPlot}). Imports nothing of lorafleet.
 */
package io.lorafleet.driver.report;
