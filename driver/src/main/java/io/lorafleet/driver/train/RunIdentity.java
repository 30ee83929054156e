package io.lorafleet.driver.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.driver.checkpoint.Checkpoints;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.LoraConfig;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Objects;

/**
 * What a checkpoint must share with the job that continues it. --resume refuses any difference in
 * the LoRA config (it fixes the adapter's layout and meaning), the global batch and micro-batch (its
 * slots fix the summation order), seed, optimizer and learning-rate schedule (they fix the
 * trajectory) or the dataset (its fingerprint): a run that
 * continued under other settings would be neither the old run nor a new one. The LoRA config lives
 * in the checkpoint's adapter_config.json; the rest in trainer_state.json under "job". The number of
 * workers is not part of it: any worker count the slots allow continues the same bytes.
 */
final class RunIdentity {
  private static final ObjectMapper JSON = new ObjectMapper();

  /** Fields that checkpoints written before them lack: micro_batch (2026-12-07, slots of the global batch). */
  private static final java.util.Set<String> ADDED_LATER = java.util.Set.of("micro_batch");

  private RunIdentity() {}

  /** trainer_state.json's "job" for this run. */
  static ObjectNode job(TrainConfig cfg, String datasetFingerprint) {
    ObjectNode j = JSON.createObjectNode();
    j.put("global_batch", cfg.batching().globalBatch());
    j.put("micro_batch", cfg.batching().microBatch());
    j.put("seed", cfg.batching().seed());
    j.put("optimizer", cfg.optimization().optimizer());
    j.put("schedule", cfg.optimization().schedule());
    j.put("lr", cfg.optimization().lr());
    j.put("warmup", cfg.optimization().warmup());
    // a constant schedule does not depend on the run's length, so such a run may be extended
    j.put("total_steps", cfg.optimization().schedule().equals("constant") ? 0 : cfg.batching().steps());
    j.put("dataset_fingerprint", datasetFingerprint);
    j.put("data_order", "block-shuffle-1"); // EpochOrder's scheme: its positions are the data cursor
    j.put("shuffle_window", cfg.batching().shuffleWindow());
    if (cfg.optimization().loraplusLrRatio() > 0) { // present only when set, so runs from before LoRA+ still resume
      j.put("loraplus_lr_ratio", cfg.optimization().loraplusLrRatio());
    }
    return j;
  }

  /** Throws IllegalArgumentException naming every field where checkpoint {@code st} differs from this job. */
  static void check(Checkpoints.State st, LoraConfig lora, ObjectNode job) throws IOException {
    List<String> diffs = new ArrayList<>();
    LoraConfig had = AdapterFormat.readConfig(st.dir());
    same(diffs, "r", had.r(), lora.r());
    same(diffs, "lora_alpha", had.loraAlpha(), lora.loraAlpha());
    same(diffs, "lora_dropout", had.loraDropout(), lora.loraDropout());
    same(diffs, "target_modules", new HashSet<>(had.targetModules()), new HashSet<>(lora.targetModules()));
    same(diffs, "layers_to_transform", had.layersToTransform(), lora.layersToTransform());
    same(diffs, "rank_pattern", had.rankPattern(), lora.rankPattern());
    same(diffs, "alpha_pattern", had.alphaPattern(), lora.alphaPattern());
    same(diffs, "bias", had.bias(), lora.bias());
    same(diffs, "use_rslora", had.useRslora(), lora.useRslora());
    same(diffs, "peft_type", had.peftType(), lora.peftType());
    // the method and its settings (AdaLoRA's allocation changes as it trains: see PeftMethod.identity)
    same(diffs, "method", had.method().identity(), lora.method().identity());
    JsonNode was = st.job();
    if (was == null || !was.isObject() || was.isEmpty()) {
      throw new IllegalArgumentException("--resume: " + st.dir() + " records no job settings (written by an older lorafleet); "
          + "it cannot be checked, start a new run");
    }
    job.fields().forEachRemaining(e -> {
      if (!(ADDED_LATER.contains(e.getKey()) && was.path(e.getKey()).isMissingNode())) { // a checkpoint from before the field existed resumes
        same(diffs, e.getKey(), was.path(e.getKey()).asText("(absent)"), e.getValue().asText());
      }
    });
    if (!diffs.isEmpty()) {
      throw new IllegalArgumentException("--resume: " + st.dir().getFileName() + " does not belong to this job: " + String.join("; ", diffs)
          + ". Resume with the checkpoint's settings, or start a new run (another --out, or --overwrite)");
    }
  }

  private static void same(List<String> diffs, String field, Object checkpoint, Object now) {
    if (!Objects.equals(checkpoint, now)) {
      diffs.add(field + " is " + checkpoint + " in the checkpoint but " + now + " in this job");
    }
  }

  /** A dataset's fingerprint: SHA-256 of its manifest.json (which lists every input, option and split count). */
  static String fingerprint(byte[] manifest) {
    return Checkpoints.sha256(manifest);
  }
}
