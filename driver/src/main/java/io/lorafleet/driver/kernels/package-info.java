/**
 * The driver's elementwise float kernels ({@link io.lorafleet.driver.kernels.Kernels}), shared by the gradient channel's
 * reduce and the optimizer: vectorized, yet bit-identical to their scalar loops for any chunking and thread count.
 *
 * <p>Imports: nothing of lorafleet's.
 */
package io.lorafleet.driver.kernels;
