/**
 * Tokenized shards in Hugging Face datasets' layout: Arrow IPC stream files with the features in the schema
 * metadata ({@link io.lorafleet.datasets.arrow.ShardFormat}), written ({@link io.lorafleet.datasets.arrow.ShardWriter})
 * and read back ({@link io.lorafleet.datasets.arrow.ShardReader}, {@link io.lorafleet.datasets.arrow.SplitReader}) with
 * an index of row counts ({@link io.lorafleet.datasets.arrow.ShardIndex}); one {@link io.lorafleet.datasets.arrow.Example}
 * a row, checked against the model's vocabulary and head ({@link io.lorafleet.datasets.arrow.TokenLimits}), every error
 * naming the split, shard and row. Allocators are closed by whoever opens them.
 *
 * <p>Imports: {@code worker.model} only (the ignore label and the model's limits).
 */
package io.lorafleet.datasets.arrow;
