package io.lorafleet.driver.serve;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Optional;
import org.eclipse.jetty.http.HttpFields;
import org.eclipse.jetty.http.HttpHeader;
import org.eclipse.jetty.http.HttpStatus;
import org.eclipse.jetty.server.Request;
import org.eclipse.jetty.server.Response;
import org.eclipse.jetty.server.handler.ErrorHandler;
import org.eclipse.jetty.util.Callback;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The errors Jetty answers itself, before a request reaches {@link ApiServer}'s routes (a header
 * block too large, a malformed request line, a body over its limit while Jetty reads it), as the
 * same OpenAI JSON error body every other error has. The message is the status's reason phrase:
 * Jetty's own text and any exception stay in the log.
 */
final class JsonErrorHandler extends ErrorHandler {
  private static final Logger LOG = LoggerFactory.getLogger(JsonErrorHandler.class);
  private static final ObjectMapper JSON = new ObjectMapper();

  @Override
  protected void generateResponse(Request request, Response response, int code, String message, Throwable cause, Callback callback) {
    LOG.debug("HTTP {} from Jetty: {}", code, message, cause);
    response.getHeaders().put(HttpHeader.CONTENT_TYPE, "application/json");
    response.write(true, ByteBuffer.wrap(body(code)), callback);
  }

  @Override
  public ByteBuffer badMessageError(int status, String reason, HttpFields.Mutable fields) {
    LOG.debug("HTTP {} for a malformed request: {}", status, reason);
    fields.put(HttpHeader.CONTENT_TYPE, "application/json");
    return ByteBuffer.wrap(body(status));
  }

  static byte[] body(int status) {
    String type = HttpStatus.isClientError(status) ? "invalid_request_error" : "server_error";
    String reason = Optional.ofNullable(HttpStatus.getMessage(status)).orElse("HTTP " + status);
    try {
      return JSON.writeValueAsString(new ApiError(status, type, Optional.empty(), reason).body(JSON)).getBytes(StandardCharsets.UTF_8);
    } catch (JsonProcessingException e) {
      throw new IllegalStateException("an error body always serializes", e);
    }
  }
}
