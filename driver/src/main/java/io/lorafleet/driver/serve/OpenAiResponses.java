package io.lorafleet.driver.serve;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.Optional;

/**
 * The bodies OpenAI's API answers with, for one request: a whole {@code text_completion} or
 * {@code chat.completion}, or the chunks of a stream ({@code text_completion} chunks, or
 * {@code chat.completion.chunk}s whose first delta carries the role), each with {@code usage} where
 * OpenAI puts it.
 */
final class OpenAiResponses {
  private static final ObjectMapper JSON = new ObjectMapper();

  private final OpenAiRequests.Parsed parsed;
  private final String id;
  private final long created;
  private final boolean chat;

  OpenAiResponses(OpenAiRequests.Parsed parsed, long created) {
    this.parsed = parsed;
    this.chat = parsed.kind() == OpenAiRequests.Kind.CHAT;
    this.id = (chat ? "chatcmpl-" : "cmpl-") + Long.toHexString(created) + "-" + parsed.generation().id;
    this.created = created;
  }

  boolean includeUsage() {
    return parsed.includeUsage();
  }

  ObjectNode whole(Generation.Done d) {
    ObjectNode o = head(chat ? "chat.completion" : "text_completion");
    ObjectNode c = o.putArray("choices").addObject().put("index", 0);
    if (chat) {
      c.putObject("message").put("role", "assistant").put("content", d.text());
    } else {
      c.put("text", d.text());
    }
    c.putNull("logprobs");
    c.put("finish_reason", d.finishReason());
    usage(o, d);
    return o;
  }

  /** A chat stream opens with the assistant's role. */
  Optional<ObjectNode> first() {
    if (!chat) {
      return Optional.empty();
    }
    ObjectNode o = head("chat.completion.chunk");
    ObjectNode c = o.putArray("choices").addObject().put("index", 0);
    c.putObject("delta").put("role", "assistant").put("content", "");
    c.putNull("logprobs");
    c.putNull("finish_reason");
    return Optional.of(o);
  }

  ObjectNode delta(String text) {
    return chunk(text, null);
  }

  ObjectNode finish(Generation.Done d) {
    return chunk(null, d.finishReason());
  }

  /** With stream_options.include_usage: a last chunk with no choices and the usage. */
  ObjectNode usageChunk(Generation.Done d) {
    ObjectNode o = head(chat ? "chat.completion.chunk" : "text_completion");
    o.putArray("choices");
    usage(o, d);
    return o;
  }

  private ObjectNode chunk(String text, String finishReason) {
    ObjectNode o = head(chat ? "chat.completion.chunk" : "text_completion");
    ObjectNode c = o.putArray("choices").addObject().put("index", 0);
    if (chat) {
      ObjectNode delta = c.putObject("delta");
      if (text != null) {
        delta.put("content", text);
      }
    } else {
      c.put("text", text == null ? "" : text);
    }
    c.putNull("logprobs");
    if (finishReason == null) {
      c.putNull("finish_reason");
    } else {
      c.put("finish_reason", finishReason);
    }
    return o;
  }

  private ObjectNode head(String object) {
    return JSON.createObjectNode().put("id", id).put("object", object).put("created", created).put("model", parsed.generation().model);
  }

  private static void usage(ObjectNode o, Generation.Done d) {
    o.putObject("usage").put("prompt_tokens", d.promptTokens()).put("completion_tokens", d.completionTokens())
        .put("total_tokens", d.promptTokens() + d.completionTokens());
  }
}
