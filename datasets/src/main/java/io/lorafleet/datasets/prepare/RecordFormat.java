package io.lorafleet.datasets.prepare;

import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;

/**
 * How a raw record becomes a (context, target) pair, or, for {@code pretokenized}, token ids and
 * labels as given, or, for {@code chat}, a rendered conversation. The loss falls on the target
 * (the assistant's turns) only.
 */
public enum RecordFormat {
  CONTEXT_TARGET("context-target", List.of("context", "target")),
  PROMPT_COMPLETION("prompt-completion", List.of("prompt", "completion")),
  ALPACA("alpaca", List.of("instruction", "input", "output")),
  TEXT("text", List.of("text")),
  /** Token ids and HF-convention labels (-100 where no loss falls), taken as they are. */
  PRETOKENIZED("pretokenized", List.of("input_ids", "labels")),
  /** OpenAI-style messages through the tokenizer's chat template; only assistant turns are trained. */
  CHAT("chat", List.of("messages")),
  /** text, an optional text_pair and a label (a class id, a name from the model's id2label, or a value for regression) for an encoder. */
  CLASSIFICATION("classification", List.of("text", "text_pair", "label"));

  /** The Stanford Alpaca prompt, with and without an input. */
  static final String ALPACA_WITH_INPUT = "Below is an instruction that describes a task, paired with an input that provides further context. "
      + "Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n";
  static final String ALPACA_NO_INPUT = "Below is an instruction that describes a task. "
      + "Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n";

  private final String cliName;
  private final List<String> fields;

  RecordFormat(String cliName, List<String> fields) {
    this.cliName = cliName;
    this.fields = fields;
  }

  public String cliName() {
    return cliName;
  }

  public static RecordFormat parse(String s) {
    for (RecordFormat f : values()) {
      if (f.cliName.equals(s)) {
        return f;
      }
    }
    throw new IllegalArgumentException("--format '" + s + "' is not supported, expected one of "
        + Arrays.stream(values()).map(RecordFormat::cliName).collect(Collectors.joining(", ")));
  }

  /** A record's (context, target), or the reason it cannot be used. */
  public record Pair(String context, String target) {}

  static final Pattern FIELD = Pattern.compile("\\{([A-Za-z_][A-Za-z0-9_]*)\\}");

  /** Fills "{name}" placeholders from the record; a missing field is an error naming it. */
  static String render(String template, Map<String, Object> rec, PrepareOptions o) {
    Matcher m = FIELD.matcher(template);
    StringBuilder sb = new StringBuilder();
    while (m.find()) {
      m.appendReplacement(sb, Matcher.quoteReplacement(string(rec, m.group(1), o, true)));
    }
    m.appendTail(sb);
    return sb.toString();
  }

  static String string(Map<String, Object> rec, String logical, PrepareOptions o, boolean allowEmpty) {
    String col = o.records().column(logical);
    Object v = rec.get(col);
    if (v == null) {
      throw new BadRecord("missing field '" + col + "'");
    }
    if (!(v instanceof String s)) {
      throw new BadRecord("field '" + col + "' must be a string but found " + v.getClass().getSimpleName().toLowerCase());
    }
    if (!allowEmpty && s.isBlank()) {
      throw new BadRecord("field '" + col + "' is empty");
    }
    return s;
  }

  public Pair toPair(Map<String, Object> rec, PrepareOptions o) {
    Optional<String> tpl = o.records().templateText();
    return switch (this) {
      case CONTEXT_TARGET -> new Pair(tpl.map(t -> render(t, rec, o)).orElseGet(() -> string(rec, "context", o, true)), string(rec, "target", o, false));
      case PROMPT_COMPLETION -> new Pair(tpl.map(t -> render(t, rec, o)).orElseGet(() -> string(rec, "prompt", o, true)), string(rec, "completion", o, false));
      case ALPACA -> {
        String input = rec.get(o.records().column("input")) == null ? "" : string(rec, "input", o, true);
        String t = tpl.orElse(input.isEmpty() ? ALPACA_NO_INPUT : ALPACA_WITH_INPUT);
        yield new Pair(render(t, rec, o), string(rec, "output", o, false));
      }
      case TEXT -> new Pair("", string(rec, "text", o, false));
      case PRETOKENIZED, CHAT, CLASSIFICATION -> throw new IllegalStateException(cliName + " records have no text pair");
    };
  }

  public List<String> fields() {
    return fields;
  }

  /** A record that cannot be used, with the reason that goes to quarantine. */
  public static final class BadRecord extends RuntimeException {
    public BadRecord(String reason) {
      super(reason, null, false, false);
    }
  }
}
