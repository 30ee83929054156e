package io.lorafleet.driver.serve;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.core.exc.StreamConstraintsException;
import com.fasterxml.jackson.core.io.JsonEOFException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;

/**
 * Request bodies as RFC 8259 reads them, strictly: UTF-8 only (no other encoding guessed from the
 * first bytes, no malformed sequence replaced), exactly one JSON value with only whitespace around
 * it, no key twice in one object, and at most {@link #MAX_DEPTH} levels of nesting. Every refusal
 * is a 400 that says where the body went wrong, in the server's own words.
 */
final class StrictJson {
  /** Deeper than any OpenAI request (a chat message's content parts are four levels down). */
  static final int MAX_DEPTH = 32;

  private static final ObjectMapper JSON = new ObjectMapper(JsonFactory.builder()
      .streamReadConstraints(StreamReadConstraints.builder().maxNestingDepth(MAX_DEPTH).build()).build())
      .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION);

  private StrictJson() {}

  /** The one JSON value of a request body. */
  static JsonNode parse(byte[] body) {
    if (body.length == 0) {
      throw ApiError.invalid("body", "the request body is empty; expected a JSON object");
    }
    String text = utf8(body);
    if (text.isBlank()) {
      throw ApiError.invalid("body", "the request body holds only whitespace; expected a JSON object");
    }
    try (JsonParser p = JSON.createParser(text)) {
      JsonNode value = JSON.readTree(p);
      if (p.nextToken() != null) {
        throw ApiError.invalid("body", "the request body holds more than one JSON value: something follows it at " + where(p.currentLocation()));
      }
      return value;
    } catch (StreamConstraintsException e) {
      throw ApiError.invalid("body", "the request body exceeds the JSON limits: at most " + MAX_DEPTH + " levels of nesting and "
          + StreamReadConstraints.DEFAULT_MAX_NUM_LEN + " characters a number");
    } catch (JsonEOFException e) {
      throw ApiError.invalid("body", "the request body ends inside a JSON value at " + where(e.getLocation()));
    } catch (JsonProcessingException e) {
      throw ApiError.invalid("body", "the request body is not valid JSON at " + where(e.getLocation()) + ": " + firstLine(e.getOriginalMessage()));
    } catch (IOException e) { // reading a String raises no other I/O error
      throw ApiError.invalid("body", "the request body could not be read as JSON");
    }
  }

  private static String where(JsonLocation at) {
    return at == null ? "an unknown place" : "line " + at.getLineNr() + ", column " + at.getColumnNr();
  }

  private static String utf8(byte[] body) {
    CharsetDecoder d = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
        .onUnmappableCharacter(CodingErrorAction.REPORT);
    ByteBuffer in = ByteBuffer.wrap(body);
    try {
      CharBuffer out = d.decode(in);
      return out.toString();
    } catch (CharacterCodingException e) {
      throw ApiError.invalid("body", "the request body is not UTF-8: byte " + in.position() + " (0x"
          + String.format("%02x", body[Math.min(in.position(), body.length - 1)] & 0xff) + ") begins no valid UTF-8 sequence");
    }
  }

  private static String firstLine(String s) {
    String line = s == null ? "malformed" : s.split("\n", 2)[0];
    return line.length() > 200 ? line.substring(0, 197) + "..." : line;
  }
}
