/**
 * The flat-buffer contract between what is trained and everything that moves it: every trainable
 * tensor is a slice of one float[] ({@link io.lorafleet.worker.flat.FlatLayout}: key, shape, offset,
 * frozen or not), which the gradient channel reduces, the driver's optimizer updates and checkpoints
 * save; {@link io.lorafleet.worker.flat.Trainable} is what a training step needs of a model that owns
 * such a buffer (an adapter, or the full model).
 *
 * <p>Imports: {@code worker.model} (the forward context a trainable model runs in).
 */
package io.lorafleet.worker.flat;
