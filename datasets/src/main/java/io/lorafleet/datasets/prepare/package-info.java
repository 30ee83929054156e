/**
 * {@code lorafleet prepare} on Spark: raw records from JSONL, CSV or Parquet files, in one of the
 * {@link io.lorafleet.datasets.prepare.RecordFormat}s, become tokenized, label-masked examples: context/target pairs ({@link io.lorafleet.datasets.prepare.Tokenize}), chat
 * conversations through the tokenizer's Jinja template ({@link io.lorafleet.datasets.prepare.ChatFormat},
 * {@link io.lorafleet.datasets.prepare.ChatTemplate}), pretokenized rows ({@link io.lorafleet.datasets.prepare.Pretokenized}),
 * and sequence-classification texts with labels ({@link io.lorafleet.datasets.prepare.Classification}); optionally packed
 * ({@link io.lorafleet.datasets.prepare.Packing}); bad records go to a quarantine with their reasons.
 * {@link io.lorafleet.datasets.prepare.Prepare} writes them as Arrow shards through {@code datasets.arrow}.
 *
 * <p>Imports: {@code datasets.arrow}, {@code worker.model} (the ignore label, model configs) and {@code worker.tokenizer}.
 */
package io.lorafleet.datasets.prepare;
