package io.lorafleet.driver.serve;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.Optional;

/**
 * A request the server refuses, with its HTTP status and OpenAI's error body:
 * {@code {"error": {"message", "type", "param", "code"}}}.
 */
public final class ApiError extends RuntimeException {
  private final int status;
  private final String type;
  private final Optional<String> param;

  public ApiError(int status, String type, Optional<String> param, String message) {
    super(message, null, false, false);
    this.status = status;
    this.type = type;
    this.param = param;
  }

  /** 400 invalid_request_error about {@code param}. */
  public static ApiError invalid(String param, String message) {
    return new ApiError(400, "invalid_request_error", Optional.of(param), message);
  }

  /**
   * 500 for the server's own fault: a fixed message, never the exception's text (which says how the
   * server is built, not what the client did); the exception goes to the log with its stack.
   */
  public static ApiError server(String what) {
    return new ApiError(500, "server_error", Optional.empty(), what + " failed inside the server; its log has the details");
  }

  /** 429 with Retry-After: the server is full now, the same request may pass later. */
  public static ApiError busy(String message) {
    return new ApiError(429, "rate_limit_error", Optional.empty(), message);
  }

  public int status() {
    return status;
  }

  public ObjectNode body(ObjectMapper json) {
    ObjectNode root = json.createObjectNode();
    ObjectNode e = root.putObject("error");
    e.put("message", getMessage());
    e.put("type", type);
    if (param.isPresent()) {
      e.put("param", param.get());
    } else {
      e.putNull("param");
    }
    e.put("code", status);
    return root;
  }
}
