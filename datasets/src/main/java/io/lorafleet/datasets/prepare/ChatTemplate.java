package io.lorafleet.datasets.prepare;

import com.fasterxml.jackson.databind.JsonNode;
import com.google.common.collect.Lists;
import com.hubspot.jinjava.Jinjava;
import com.hubspot.jinjava.JinjavaConfig;
import com.hubspot.jinjava.interpret.FatalTemplateErrorsException;
import com.hubspot.jinjava.lib.fn.ELFunctionDefinition;
import io.lorafleet.worker.tokenizer.Tokenizer;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * A tokenizer's {@code chat_template} (tokenizer_config.json: a string, or a list of named templates
 * of which "default" is taken) rendered with a real Jinja engine (Jinjava), with the variables
 * transformers' apply_chat_template passes: {@code messages}, {@code add_generation_prompt},
 * {@code bos_token}, {@code eos_token} and the function {@code raise_exception}. Used by
 * {@code prepare --format chat} and by {@code serve}'s chat completions.
 */
public final class ChatTemplate {
  /** The template refused the conversation (raise_exception) or failed to render. */
  public static final class Refused extends RuntimeException {
    public Refused(String reason) {
      super(reason, null, false, false);
    }
  }

  /** One engine per thread: Jinjava interpreters are not shared across threads. */
  private static final ThreadLocal<Jinjava> ENGINE = ThreadLocal.withInitial(ChatTemplate::engine);

  private final String template;
  private final String bos;
  private final String eos;

  private ChatTemplate(String template, String bos, String eos) {
    this.template = template;
    this.bos = bos;
    this.eos = eos;
  }

  /** The tokenizer's chat template, if its tokenizer_config.json has one. */
  public static Optional<ChatTemplate> of(Tokenizer tok) {
    JsonNode t = tok.tokenizerConfig().get("chat_template");
    String text = null;
    if (t != null && t.isTextual()) {
      text = t.asText();
    } else if (t != null && t.isArray()) {
      for (JsonNode n : t) {
        if (n.path("name").asText().equals("default")) {
          text = n.path("template").asText();
        }
      }
    }
    return Optional.ofNullable(text).map(s -> new ChatTemplate(s, special(tok, "bos_token"), special(tok, "eos_token")));
  }

  /** Raised by templates through raise_exception(message). */
  public static String raiseException(String message) {
    throw new Refused("chat template refused the conversation: " + message);
  }

  /** The conversation as text, ending with the assistant's header when {@code generationPrompt}. */
  public String render(List<Map<String, Object>> messages, boolean generationPrompt) {
    Map<String, Object> ctx = new HashMap<>();
    ctx.put("messages", Lists.newArrayList(messages));
    ctx.put("add_generation_prompt", generationPrompt);
    ctx.put("bos_token", bos);
    ctx.put("eos_token", eos);
    try {
      return ENGINE.get().render(template, ctx);
    } catch (FatalTemplateErrorsException e) {
      // Jinjava reports a function's exception as a template error; raise_exception's message is in its causes.
      for (var err : e.getErrors()) {
        for (Throwable t = err.getException(); t != null; t = t.getCause()) {
          if (t instanceof Refused r) {
            throw r;
          }
        }
      }
      throw new Refused("chat template failed: " + e.getMessage().split("\n")[0]);
    }
  }

  private static Jinjava engine() {
    Jinjava j = new Jinjava(JinjavaConfig.newBuilder().withFailOnUnknownTokens(false).build());
    j.getGlobalContext().registerFunction(new ELFunctionDefinition("", "raise_exception", ChatTemplate.class, "raiseException", String.class));
    return j;
  }

  private static String special(Tokenizer tok, String key) {
    JsonNode n = tok.tokenizerConfig().get(key);
    if (n == null || n.isNull()) {
      return "";
    }
    return n.isTextual() ? n.asText() : n.path("content").asText();
  }
}
