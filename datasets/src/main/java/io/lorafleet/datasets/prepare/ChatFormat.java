package io.lorafleet.datasets.prepare;

import com.fasterxml.jackson.databind.JsonNode;
import io.lorafleet.datasets.arrow.Example;
import io.lorafleet.worker.model.Batch;
import io.lorafleet.worker.tokenizer.Tokenizer;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The {@code chat} format: OpenAI-style {@code messages} (role, content) rendered through the
 * tokenizer's own {@code chat_template} (tokenizer_config.json) with a real Jinja engine
 * (Jinjava). Only assistant turns carry loss: for the i-th assistant message the conversation is
 * rendered up to it with add_generation_prompt (the prompt) and including it (the full text); the
 * text between the two is the assistant's part. Templates whose renders are not prefixes of each
 * other are refused, since the trained span would be ambiguous. Like apply_chat_template, no
 * special tokens are added beyond what the template writes.
 */
final class ChatFormat {
  static final Set<String> ROLES = Set.of("system", "user", "assistant", "tool");

  private ChatFormat() {}

  static List<Map<String, Object>> messages(Map<String, Object> rec, PrepareOptions o) {
    String col = o.records().column("messages");
    Object v = rec.get(col);
    if (v == null) {
      throw new RecordFormat.BadRecord("missing field '" + col + "'");
    }
    List<Map<String, Object>> out = new ArrayList<>();
    if (v instanceof JsonNode n && n.isArray()) {
      int i = 0;
      for (JsonNode m : n) {
        if (!m.isObject() || !m.path("role").isTextual() || !m.path("content").isTextual()) {
          throw new RecordFormat.BadRecord("messages[" + i + "] needs string fields role and content");
        }
        Map<String, Object> msg = new LinkedHashMap<>();
        msg.put("role", m.get("role").asText());
        msg.put("content", m.get("content").asText());
        out.add(msg);
        i++;
      }
    } else {
      throw new RecordFormat.BadRecord("field '" + col + "' must be a list of {role, content} messages");
    }
    for (int i = 0; i < out.size(); i++) {
      if (!ROLES.contains((String) out.get(i).get("role"))) {
        throw new RecordFormat.BadRecord("messages[" + i + "].role '" + out.get(i).get("role") + "' is not one of " + ROLES);
      }
    }
    if (out.stream().noneMatch(m -> m.get("role").equals("assistant"))) {
      throw new RecordFormat.BadRecord("no assistant message to train on");
    }
    return out;
  }

  /** The model's chat template, or a refusal naming what --format chat needs. */
  static ChatTemplate template(Tokenizer tok) {
    return ChatTemplate.of(tok).orElseThrow(() -> new IllegalArgumentException(
        "--format chat needs a chat_template in the model's tokenizer_config.json, and it has none"));
  }

  static Tokenize.Result example(Tokenizer tok, ChatTemplate template, Map<String, Object> rec, PrepareOptions o) {
    List<Map<String, Object>> msgs = messages(rec, o);
    List<Integer> ids = new ArrayList<>();
    List<Integer> labels = new ArrayList<>();
    String done = "";
    for (int i = 0; i < msgs.size(); i++) {
      if (!msgs.get(i).get("role").equals("assistant")) {
        continue;
      }
      String prompt = render(template, msgs.subList(0, i), true);
      String full = render(template, msgs.subList(0, i + 1), false);
      if (!prompt.startsWith(done) || !full.startsWith(prompt)) {
        throw new RecordFormat.BadRecord("the chat template's renders are not prefixes of each other at message " + i + "; cannot tell the assistant's span");
      }
      append(tok, prompt.substring(done.length()), false, ids, labels, o);
      append(tok, full.substring(prompt.length()), true, ids, labels, o);
      done = full;
    }
    if (ids.size() > o.tokens().maxSeqLen()) {
      throw new RecordFormat.BadRecord("too long: " + ids.size() + " tokens, --max-seq-len is " + o.tokens().maxSeqLen());
    }
    if (labels.stream().allMatch(l -> l == Batch.IGNORE)) {
      throw new RecordFormat.BadRecord("assistant messages tokenize to nothing");
    }
    return new Tokenize.Result(new Example(ids.stream().mapToInt(Integer::intValue).toArray(), labels.stream().mapToInt(Integer::intValue).toArray()), false);
  }

  private static void append(Tokenizer tok, String text, boolean trained, List<Integer> ids, List<Integer> labels, PrepareOptions o) {
    for (int t : tok.encode(text)) {
      ids.add(t);
      labels.add(trained || o.records().trainOnInputs() ? t : Batch.IGNORE);
    }
  }

  private static String render(ChatTemplate template, List<Map<String, Object>> msgs, boolean generationPrompt) {
    try {
      return template.render(msgs, generationPrompt);
    } catch (ChatTemplate.Refused e) {
      throw new RecordFormat.BadRecord(e.getMessage());
    }
  }
}
