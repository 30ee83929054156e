package io.lorafleet.driver.train;

import ai.djl.ndarray.NDArray;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.worker.flat.FlatLayout;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraDelta;
import io.lorafleet.worker.lora.LoraMethod;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.lora.LoraTarget;
import io.lorafleet.worker.lora.PeftMethod;
import io.lorafleet.worker.lora.PeftMethods;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import java.util.function.Function;

/**
 * A toy PEFT method that lives only in the test sources and reaches lorafleet through its
 * META-INF/services entry alone: LoRA with its scaling multiplied by {@code gamma}, so that it is
 * exactly LoRA with lora_alpha·gamma, which is what the test holds it to.
 */
public record ScaledLoraMethod(double gamma) implements PeftMethod {
  @Override
  public String name() {
    return "scaled-lora";
  }

  @Override
  public String peftType() {
    return "SCALED_LORA";
  }

  @Override
  public double scale(LoraConfig c, String module) {
    return gamma * LoraMethod.INSTANCE.scale(c, module);
  }

  @Override
  public void addSlots(FlatLayout.Builder b, LoraConfig c, List<LoraTarget> targets) {
    LoraMethod.INSTANCE.addSlots(b, c, targets);
  }

  @Override
  public void init(LoraModel m, float[] flat, Random rng) {
    LoraMethod.INSTANCE.init(m, flat, rng);
  }

  @Override
  public NDArray delta(Function<String, NDArray> tensor, LoraTarget t) {
    return LoraMethod.INSTANCE.delta(tensor, t);
  }

  @Override
  public LoraDelta.Factors factors(LoraModel.Binding b, LoraTarget t, int index) {
    return LoraMethod.INSTANCE.factors(b, t, index);
  }

  @Override
  public ObjectNode configJson(LoraModel model) {
    ObjectNode n = LoraMethod.INSTANCE.configJson(model);
    n.put("peft_type", peftType());
    n.put("gamma", gamma);
    return n;
  }

  /** Registered in src/test/resources/META-INF/services. */
  public static final class Provider implements PeftMethod.Provider {
    @Override
    public List<String> names() {
      return List.of("scaled-lora");
    }

    @Override
    public List<String> peftTypes() {
      return List.of("SCALED_LORA");
    }

    @Override
    public LoraConfig read(Path file, JsonNode n, AdapterFormat.Fields fields) {
      return fields.lora(n).withMethod(new ScaledLoraMethod(n.path("gamma").asDouble(1)));
    }

    @Override
    public LoraConfig configure(String name, PeftMethods.Options options, LoraConfig base) {
      return base.withMethod(new ScaledLoraMethod(options.real("gamma", 1)));
    }
  }
}
