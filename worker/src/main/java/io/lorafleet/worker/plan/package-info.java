/**
 * {@code lorafleet plan}: a worker's and the driver's memory predicted from the model's shapes, the adapter and the batch
 * ({@link io.lorafleet.worker.plan.MemoryPlan}), before anything is loaded.
 *
 * <p>Imports: {@code worker.lora} and {@code worker.model}.
 */
package io.lorafleet.worker.plan;
