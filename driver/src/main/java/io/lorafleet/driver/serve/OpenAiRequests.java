package io.lorafleet.driver.serve;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.datasets.prepare.ChatTemplate;
import io.lorafleet.worker.generate.Sampling;
import io.lorafleet.worker.tokenizer.Tokenizer;
import java.math.BigInteger;
import java.time.Clock;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Predicate;

/**
 * OpenAI's completion and chat-completion request bodies, checked field by field into a
 * {@link Generation}. Every refusal is a 400 naming the field, the value and what was expected, or a
 * 404 for an unknown model. Fields of OpenAI's API that lorafleet does not implement are accepted
 * only at the value that turns them off; fields OpenAI does not know are refused, as OpenAI does.
 */
final class OpenAiRequests {
  enum Kind {
    COMPLETION("/v1/completions", "prompt", 16),
    CHAT("/v1/chat/completions", "messages", -1);

    final String path;
    final String input;
    /** OpenAI's default max_tokens (−1: what the context leaves, as for chat). */
    final int defaultMaxTokens;

    Kind(String path, String input, int defaultMaxTokens) {
      this.path = path;
      this.input = input;
      this.defaultMaxTokens = defaultMaxTokens;
    }
  }

  /** A checked request: its generation and how to answer it. */
  record Parsed(Kind kind, Generation generation, boolean stream, boolean includeUsage) {}

  static final Set<String> ROLES = Set.of("system", "user", "assistant", "tool", "developer");
  private static final Set<String> COMMON = Set.of("model", "max_tokens", "temperature", "top_p", "stop", "seed", "stream", "stream_options", "n",
      "user");
  /** OpenAI fields lorafleet does not implement, and the values that mean "off". */
  private static final Map<String, Predicate<JsonNode>> OFF = Map.ofEntries(
      Map.entry("logprobs", v -> v.isNull() || v.isBoolean() && !v.asBoolean()),
      Map.entry("top_logprobs", JsonNode::isNull),
      Map.entry("echo", v -> v.isNull() || v.isBoolean() && !v.asBoolean()),
      Map.entry("best_of", OpenAiRequests::isNullOrOne),
      Map.entry("presence_penalty", v -> v.isNull() || v.isNumber() && v.asDouble() == 0),
      Map.entry("frequency_penalty", v -> v.isNull() || v.isNumber() && v.asDouble() == 0),
      Map.entry("logit_bias", v -> v.isNull() || v.isObject() && v.isEmpty()),
      Map.entry("suffix", JsonNode::isNull),
      Map.entry("tools", v -> v.isNull() || v.isArray() && v.isEmpty()),
      Map.entry("tool_choice", v -> v.isNull() || v.asText().equals("none")),
      Map.entry("response_format", v -> v.isNull() || v.path("type").asText().equals("text")));

  private final String baseName;
  private final AdapterRegistry adapters;
  private final Tokenizer tok;
  private final Optional<ChatTemplate> template;
  private final int context;
  private final int vocab;
  private final Clock clock;
  private final Duration timeout;
  private final AtomicLong ids = new AtomicLong();

  OpenAiRequests(String baseName, AdapterRegistry adapters, Tokenizer tok, int context, int vocab, Clock clock, Duration timeout) {
    this.baseName = baseName;
    this.adapters = adapters;
    this.tok = tok;
    this.template = ChatTemplate.of(tok);
    this.context = context;
    this.vocab = vocab;
    this.clock = clock;
    this.timeout = timeout;
  }

  /** Checks a request body; on success the generation holds its adapter until the scheduler ends it. */
  Parsed parse(Kind kind, JsonNode body) {
    if (!(body instanceof ObjectNode o)) {
      throw ApiError.invalid("body", "the request body must be a JSON object but found " + body.getNodeType().toString().toLowerCase());
    }
    refuseUnknownFields(kind, o);
    String model = text(o, "model").orElseThrow(() -> ApiError.invalid("model", "'model' is required: the base model's name ('" + baseName
        + "') or a loaded adapter's"));
    if (!model.equals(baseName) && adapters.list().stream().noneMatch(e -> e.name().equals(model))) {
      throw unknown(model);
    }
    int[] prompt = kind == Kind.CHAT ? chatPrompt(o) : completionPrompt(o);
    if (o.has("n") && !isNullOrOne(o.get("n"))) {
      throw ApiError.invalid("n", "'n' must be 1 (one choice per request) but found " + o.get("n"));
    }
    String maxField = "max_tokens";
    Optional<BigInteger> maxTokens = tokenCount(o, "max_tokens");
    if (kind == Kind.CHAT) {
      Optional<BigInteger> mct = tokenCount(o, "max_completion_tokens");
      if (maxTokens.isPresent() && mct.isPresent() && !maxTokens.equals(mct)) {
        throw ApiError.invalid("max_completion_tokens", "max_tokens " + maxTokens.get() + " and max_completion_tokens " + mct.get() + " disagree");
      }
      if (maxTokens.isEmpty() && mct.isPresent()) {
        maxField = "max_completion_tokens";
        maxTokens = mct;
      }
    }
    if (prompt.length >= context) {
      throw ApiError.invalid(kind.input, "This model's maximum context length is " + context + " tokens, but the " + kind.input + " has "
          + prompt.length + " tokens, leaving none to generate");
    }
    int max = withinContext(maxField, kind, prompt.length, maxTokens.orElse(BigInteger.valueOf(kind.defaultMaxTokens < 0 ? context - prompt.length
        : kind.defaultMaxTokens)));
    double temperature = number(o, "temperature", 0, 2, true).orElse(1.0);
    double topP = number(o, "top_p", 0, 1, false).orElse(1.0);
    long seed = seed(o);
    List<String> stop = stops(o);
    boolean stream = bool(o, "stream").orElse(false);
    boolean includeUsage = includeUsage(o, stream);
    if (o.has("user") && !o.get("user").isNull() && !o.get("user").isTextual()) {
      throw ApiError.invalid("user", "'user' must be a string but found " + o.get("user"));
    }
    Sampling sampling = new Sampling(max, temperature, topP, seed);
    Optional<AdapterRegistry.Entry> adapter = Optional.empty();
    if (!model.equals(baseName)) {
      adapter = adapters.acquire(model);
      if (adapter.isEmpty()) { // unloaded since the check above
        throw unknown(model);
      }
    }
    Generation g = new Generation(ids.incrementAndGet(), model, adapter, prompt, sampling, tok.eos(), new TextStream(tok::decode, stop),
        clock.instant().plus(timeout), context);
    return new Parsed(kind, g, stream, includeUsage);
  }

  /** Fields of neither this endpoint nor the common set are refused by name; OpenAI fields lorafleet ignores must be at their defaults. */
  private static void refuseUnknownFields(Kind kind, ObjectNode o) {
    for (Iterator<String> it = o.fieldNames(); it.hasNext();) {
      String f = it.next();
      if (COMMON.contains(f) || f.equals(kind.input) || kind == Kind.CHAT && f.equals("max_completion_tokens")) {
        continue;
      }
      if (!OFF.containsKey(f)) {
        throw ApiError.invalid(f, "Unrecognized request argument supplied: " + f);
      }
      if (!OFF.get(f).test(o.get(f))) {
        throw ApiError.invalid(f, "'" + f + "' is not supported by lorafleet serve (found " + o.get(f) + "); leave it out or at its default");
      }
    }
  }

  /** 'seed' as given (an integer), or a fresh one. */
  private static long seed(ObjectNode o) {
    if (!o.hasNonNull("seed")) {
      return new SplittableRandom().nextLong();
    }
    if (!o.get("seed").canConvertToLong() || !o.get("seed").isIntegralNumber()) {
      throw ApiError.invalid("seed", "'seed' must be an integer but found " + o.get("seed"));
    }
    return o.get("seed").asLong();
  }

  /** stream_options.include_usage, allowed with "stream": true only. */
  private static boolean includeUsage(ObjectNode o, boolean stream) {
    if (!o.hasNonNull("stream_options")) {
      return false;
    }
    JsonNode so = o.get("stream_options");
    if (!stream) {
      throw ApiError.invalid("stream_options", "'stream_options' is only allowed with \"stream\": true");
    }
    if (!so.isObject() || so.has("include_usage") && !so.get("include_usage").isBoolean()) {
      throw ApiError.invalid("stream_options", "'stream_options' must be {\"include_usage\": true|false} but found " + so);
    }
    return so.path("include_usage").asBoolean(false);
  }

  /** null, or exactly the integer 1 (2^32 + 1 is not 1, though its low 32 bits are). */
  private static boolean isNullOrOne(JsonNode v) {
    return v.isNull() || v.isIntegralNumber() && v.canConvertToInt() && v.asInt() == 1;
  }

  private ApiError unknown(String model) {
    return new ApiError(404, "not_found_error", Optional.of("model"), "The model '" + model + "' does not exist; serving '" + baseName
        + "' and adapters " + adapters.list().stream().map(AdapterRegistry.Entry::name).toList());
  }

  private int[] completionPrompt(ObjectNode o) {
    JsonNode p = o.get("prompt");
    if (p == null || p.isNull()) {
      throw ApiError.invalid("prompt", "'prompt' is required");
    }
    if (p.isArray() && p.size() == 1 && p.get(0).isTextual()) {
      p = p.get(0);
    }
    if (p.isTextual()) {
      if (p.asText().isEmpty()) {
        throw ApiError.invalid("prompt", "'prompt' must not be empty");
      }
      return tok.encodePrompt(p.asText());
    }
    if (p.isArray() && !p.isEmpty() && p.get(0).isIntegralNumber()) {
      int[] ids = new int[p.size()];
      for (int i = 0; i < ids.length; i++) {
        JsonNode t = p.get(i);
        if (!t.isIntegralNumber() || !t.canConvertToInt() || t.asInt() < 0 || t.asInt() >= vocab) { // no id wraps around into range
          throw ApiError.invalid("prompt", "prompt[" + i + "] must be a token id in [0, " + vocab + ") but found " + t);
        }
        ids[i] = t.asInt();
      }
      return ids;
    }
    throw ApiError.invalid("prompt", "'prompt' must be a non-empty string or a list of token ids (one prompt per request) but found "
        + abbreviate(p));
  }

  private int[] chatPrompt(ObjectNode o) {
    JsonNode ms = o.get("messages");
    if (ms == null || !ms.isArray() || ms.isEmpty()) {
      throw ApiError.invalid("messages", "'messages' must be a non-empty list of {role, content} but found " + (ms == null ? "nothing" : abbreviate(ms)));
    }
    List<Map<String, Object>> msgs = new ArrayList<>();
    for (int i = 0; i < ms.size(); i++) {
      JsonNode m = ms.get(i);
      String at = "messages[" + i + "]";
      if (!m.isObject() || !m.path("role").isTextual() || !ROLES.contains(m.get("role").asText())) {
        throw ApiError.invalid(at + ".role", at + " needs a role, one of " + ROLES + ", but found " + abbreviate(m));
      }
      Map<String, Object> msg = new LinkedHashMap<>();
      msg.put("role", m.get("role").asText());
      msg.put("content", content(m.get("content"), at));
      msgs.add(msg);
    }
    ChatTemplate t = template.orElseThrow(() -> ApiError.invalid("messages", "the model's tokenizer_config.json has no chat_template; use "
        + Kind.COMPLETION.path + " with a prompt"));
    String text;
    try {
      text = t.render(msgs, true);
    } catch (ChatTemplate.Refused e) {
      throw ApiError.invalid("messages", e.getMessage());
    }
    int[] ids = tok.encode(text); // as apply_chat_template: the template writes every special token itself
    if (ids.length == 0) {
      throw ApiError.invalid("messages", "the conversation renders to no tokens");
    }
    return ids;
  }

  /** A message's content: a string, or a list of {"type": "text", "text"} parts, joined. */
  private static String content(JsonNode c, String at) {
    if (c != null && c.isTextual()) {
      return c.asText();
    }
    if (c != null && c.isArray()) {
      StringBuilder sb = new StringBuilder();
      for (int j = 0; j < c.size(); j++) {
        JsonNode part = c.get(j);
        if (!part.path("type").asText().equals("text") || !part.path("text").isTextual()) {
          throw ApiError.invalid(at + ".content[" + j + "]", "only {\"type\": \"text\", \"text\": ...} parts are supported but found " + abbreviate(part));
        }
        sb.append(part.get("text").asText());
      }
      return sb.toString();
    }
    throw ApiError.invalid(at + ".content", at + ".content must be a string or a list of text parts but found " + (c == null ? "nothing" : abbreviate(c)));
  }

  private static List<String> stops(ObjectNode o) {
    JsonNode s = o.get("stop");
    if (s == null || s.isNull()) {
      return List.of();
    }
    List<String> out = new ArrayList<>();
    if (s.isTextual()) {
      out.add(s.asText());
    } else if (s.isArray() && s.size() <= 4) {
      s.forEach(x -> out.add(x.isTextual() ? x.asText() : ""));
    } else {
      throw ApiError.invalid("stop", "'stop' must be a string or a list of up to 4 strings but found " + abbreviate(s));
    }
    if (out.stream().anyMatch(String::isEmpty)) {
      throw ApiError.invalid("stop", "every stop sequence must be a non-empty string but found " + abbreviate(s));
    }
    return out;
  }

  private static Optional<String> text(ObjectNode o, String f) {
    JsonNode v = o.get(f);
    if (v == null || v.isNull()) {
      return Optional.empty();
    }
    if (!v.isTextual()) {
      throw ApiError.invalid(f, "'" + f + "' must be a string but found " + abbreviate(v));
    }
    return Optional.of(v.asText());
  }

  /** A token count as asked: any integer >= 1, however large (the context check then names it); never a float or a string. */
  private static Optional<BigInteger> tokenCount(ObjectNode o, String f) {
    JsonNode v = o.get(f);
    if (v == null || v.isNull()) {
      return Optional.empty();
    }
    if (!v.isIntegralNumber()) {
      throw ApiError.invalid(f, "'" + f + "' must be an integer but found " + abbreviate(v));
    }
    BigInteger n = v.bigIntegerValue();
    if (n.signum() < 1) {
      throw ApiError.invalid(f, "'" + f + "' must be at least 1 but found " + n);
    }
    return Optional.of(n);
  }

  /**
   * The completion's length once prompt plus completion is known to fit the context (exact
   * arithmetic: no sum of two counts can wrap around); else 400 naming both numbers.
   */
  private int withinContext(String field, Kind kind, int promptTokens, BigInteger completion) {
    BigInteger total = completion.add(BigInteger.valueOf(promptTokens));
    if (total.compareTo(BigInteger.valueOf(context)) > 0) {
      throw ApiError.invalid(field, "This model's maximum context length is " + context + " tokens. However, you requested " + total + " tokens ("
          + promptTokens + " in the " + kind.input + ", " + completion + " in the completion); ask for at most " + (context - promptTokens)
          + " with '" + field + "'");
    }
    return completion.intValueExact();
  }

  private static Optional<Double> number(ObjectNode o, String f, double lo, double hi, boolean loIncluded) {
    JsonNode v = o.get(f);
    if (v == null || v.isNull()) {
      return Optional.empty();
    }
    double d = v.asDouble();
    if (!v.isNumber() || Double.isNaN(d) || d > hi || d < lo || !loIncluded && d == lo) {
      throw ApiError.invalid(f, "'" + f + "' must be a number in " + (loIncluded ? "[" : "(") + lo + ", " + hi + "] but found " + abbreviate(v));
    }
    return Optional.of(d);
  }

  private static Optional<Boolean> bool(ObjectNode o, String f) {
    JsonNode v = o.get(f);
    if (v == null || v.isNull()) {
      return Optional.empty();
    }
    if (!v.isBoolean()) {
      throw ApiError.invalid(f, "'" + f + "' must be true or false but found " + abbreviate(v));
    }
    return Optional.of(v.asBoolean());
  }

  private static String abbreviate(JsonNode v) {
    String s = v.toString();
    return s.length() > 80 ? s.substring(0, 77) + "..." : s;
  }
}
