package io.lorafleet.driver.train;

import com.fasterxml.jackson.databind.JsonNode;
import io.lorafleet.worker.lora.LoraConfig;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;

/**
 * README.md in an adapter directory, the model card the Hugging Face Hub shows: YAML front matter
 * (base_model, library_name: peft, tags), then the hyperparameters, the data manifest's counts and
 * fingerprint, and the validation losses when measured. Built from the job's own settings only, so
 * no Spark conf (and no secret) reaches it.
 */
final class ModelCard {
  static final String FILE = "README.md";

  private ModelCard() {}

  static void write(Path adapterDir, TrainConfig cfg, LoraConfig lora, JsonNode manifest, String fingerprint, List<double[]> valLosses)
      throws IOException {
    String kind = lora.method().name();
    StringBuilder b = new StringBuilder();
    b.append("---\n");
    b.append("base_model: ").append(quote(lora.baseModelNameOrPath())).append('\n');
    b.append("library_name: peft\n");
    b.append("tags:\n- ").append(kind).append("\n- lorafleet\n");
    b.append("---\n\n");
    b.append("# ").append(kind.toUpperCase(Locale.ROOT)).append(" adapter trained with lorafleet\n\n");
    b.append("A PEFT adapter (`adapter_config.json`, `adapter_model.safetensors`) for `").append(lora.baseModelNameOrPath())
        .append("`, trained on ").append(cfg.batching().workers()).append(" Spark workers.\n\n");
    b.append("## Hyperparameters\n\n| setting | value |\n|---|---|\n");
    row(b, "peft_type", lora.peftType());
    row(b, "r", lora.method().rankText(lora));
    row(b, "lora_alpha", fmt(lora.loraAlpha()));
    row(b, "target_modules", String.join(", ", lora.targetModules()));
    row(b, "method / use_rslora", kind + " / " + lora.useRslora());
    row(b, "steps", Integer.toString(cfg.batching().steps()));
    row(b, "global batch / micro-batch", cfg.batching().globalBatch() + " / " + cfg.batching().microBatch());
    row(b, "optimizer, lr, schedule, warmup", cfg.optimization().optimizer() + ", " + fmt(cfg.optimization().lr()) + ", " + cfg.optimization().schedule() + ", " + cfg.optimization().warmup());
    row(b, "weight decay, clip", fmt(cfg.optimization().weightDecay()) + ", " + fmt(cfg.optimization().clip()));
    row(b, "seed", Long.toString(cfg.batching().seed()));
    if (manifest.path("labels").isObject()) { // a classifier's: what the data was prepared for, which train checked against the head
      JsonNode l = manifest.get("labels");
      List<String> names = new java.util.ArrayList<>();
      l.path("names").forEach(x -> names.add(x.asText()));
      row(b, "labels (id2label)", l.path("regression").asBoolean() ? "regression (one value)" : String.join(", ", names));
    }
    b.append("\n## Data\n\n| split | records |\n|---|---|\n");
    for (String split : List.of("train", "validation")) {
      row(b, split, Long.toString(manifest.at("/splits/" + split + "/records").asLong(0)));
    }
    b.append("\nDataset fingerprint (SHA-256 of its manifest.json): `").append(fingerprint).append("`\n");
    if (!valLosses.isEmpty()) {
      b.append("\n## Validation loss\n\n| step | loss |\n|---|---|\n");
      for (double[] v : valLosses) {
        row(b, Integer.toString((int) v[0]), String.format(Locale.ROOT, "%.4f", v[1]));
      }
    }
    Files.writeString(adapterDir.resolve(FILE), b.toString());
  }

  private static void row(StringBuilder b, String k, String v) {
    b.append("| ").append(k).append(" | ").append(v.replace("|", "\\|")).append(" |\n");
  }

  private static String fmt(double d) {
    return d == Math.rint(d) && Math.abs(d) < 1e15 ? Long.toString((long) d) : Double.toString(d);
  }

  private static String quote(String s) {
    return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
  }
}
