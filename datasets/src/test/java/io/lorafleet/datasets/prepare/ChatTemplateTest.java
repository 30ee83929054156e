package io.lorafleet.datasets.prepare;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.worker.model.ModelDirectory;
import io.lorafleet.worker.model.TinyModelSpec;
import io.lorafleet.worker.tokenizer.Tokenizer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The tokenizer's chat_template through Jinjava, with apply_chat_template's variables and raise_exception. */
class ChatTemplateTest {
  @TempDir Path tmp;

  Tokenizer withTemplate(String template) throws Exception {
    Path dir = tmp.resolve("m" + Math.abs(template.hashCode()));
    ModelDirectory.initModel(dir, new TinyModelSpec("llama", 1, 8, 2, 2, 8, 1, 64, false), List.of("hello", "user", "assistant"), 1);
    ObjectNode cfg = (ObjectNode) new ObjectMapper().readTree(dir.resolve("tokenizer_config.json").toFile());
    cfg.put("chat_template", template);
    Files.writeString(dir.resolve("tokenizer_config.json"), cfg.toString());
    return Tokenizer.load(dir);
  }

  @Test
  void rendersMessagesWithTheGenerationPromptAndSpecialTokens() throws Exception {
    String t = "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}{% endfor %}"
        + "{% if add_generation_prompt %}<|assistant|>{% endif %}";
    try (Tokenizer tok = withTemplate(t)) {
      ChatTemplate c = ChatTemplate.of(tok).orElseThrow();
      String bos = tok.tokenizerConfig().path("bos_token").asText();
      String eos = tok.tokenizerConfig().path("eos_token").asText();
      List<Map<String, Object>> msgs = List.of(Map.of("role", "system", "content", "be brief"), Map.of("role", "user", "content", "hello"));
      assertEquals(bos + "<|system|>be brief" + eos + "<|user|>hello" + eos + "<|assistant|>", c.render(msgs, true));
      assertEquals(bos + "<|system|>be brief" + eos + "<|user|>hello" + eos, c.render(msgs, false));
    }
  }

  @Test
  void raiseExceptionRefusesTheConversationWithTheTemplatesMessage() throws Exception {
    String t = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
        + "{% for m in messages %}{{ m['content'] }}{% endfor %}";
    try (Tokenizer tok = withTemplate(t)) {
      ChatTemplate c = ChatTemplate.of(tok).orElseThrow();
      assertEquals("hello", c.render(List.of(Map.of("role", "user", "content", "hello")), true));
      var e = assertThrows(ChatTemplate.Refused.class, () -> c.render(List.of(Map.of("role", "system", "content", "x")), true));
      assertTrue(e.getMessage().contains("System role not supported"), e.getMessage());
    }
  }

  @Test
  void aTokenizerWithoutATemplateHasNone() throws Exception {
    Path dir = tmp.resolve("plain");
    ModelDirectory.initModel(dir, new TinyModelSpec("llama", 1, 8, 2, 2, 8, 1, 64, false), List.of("hello"), 1);
    try (Tokenizer tok = Tokenizer.load(dir)) {
      assertTrue(ChatTemplate.of(tok).isEmpty());
    }
  }
}
