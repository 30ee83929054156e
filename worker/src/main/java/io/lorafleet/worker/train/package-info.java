/**
 * One training step on a worker: forward, loss on target tokens only ({@link io.lorafleet.worker.train.TokenLoss}) or on a
 * sequence's label ({@link io.lorafleet.worker.train.SequenceLoss}), and backward into a flat gradient
 * ({@link io.lorafleet.worker.train.TrainStep}; {@link io.lorafleet.worker.train.RecomputeStep} recomputes activations),
 * for what is trained ({@link io.lorafleet.worker.flat.Trainable}: an adapter, or the full model), with a non-finite
 * gradient refused by name ({@link io.lorafleet.worker.train.NonFiniteGradientException}).
 *
 * <p>Imports: {@code worker.flat}, {@code worker.lora} and {@code worker.model}.
 */
package io.lorafleet.worker.train;
