/**
 * What the driver does with the reduced gradient: AdamW over the fp32 master adapter ({@link io.lorafleet.driver.optim.AdamW}),
 * learning-rate schedules ({@link io.lorafleet.driver.optim.Schedule}), the fp16 loss scaler
 * ({@link io.lorafleet.driver.optim.LossScaler}) and AdaLoRA's rank allocator ({@link io.lorafleet.driver.optim.RankAllocator}).
 *
 * <p>Imports: {@code driver.kernels}, {@code worker.flat} and {@code worker.lora}.
 */
package io.lorafleet.driver.optim;
