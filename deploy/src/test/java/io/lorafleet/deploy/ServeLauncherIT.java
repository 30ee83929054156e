package io.lorafleet.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code lorafleet serve} as an operator runs it: through the launcher, on a free port, with an API
 * key from the environment; SIGTERM drains the request in flight, whose answer arrives whole, and
 * the process exits.
 */
class ServeLauncherIT {
  @TempDir Path dir;

  @Test
  void servesThroughTheLauncherAndDrainsOnSigterm() throws Exception {
    Files.writeString(dir.resolve("vocab.txt"), "a b c d e f g h =");
    Shell.ok(List.of(Fixtures.launcher(), "init-model", "--arch", "llama", "--layers", "2", "--hidden", "32", "--heads", "4", "--vocab-file",
        dir.resolve("vocab.txt").toString(), "--out", dir.resolve("model").toString()), Map.of(), dir.resolve("init.log"), 300);
    Path log = dir.resolve("serve.log");
    Process p = Shell.start(List.of(Fixtures.launcher(), "serve", "--model", dir.resolve("model").toString(), "--port", "0"),
        Map.of("LORAFLEET_API_KEY", "k1"), log);
    try {
      Pattern serving = Pattern.compile("on http://127\\.0\\.0\\.1:(\\d+)/v1 \\(API key required\\)");
      Matcher m = serving.matcher("");
      while (!m.find()) {
        assertTrue(p.isAlive(), "serve exited early:\n" + Shell.read(log));
        Thread.sleep(100); // waiting for the server to come up, not deciding anything
        m = serving.matcher(Shell.read(log));
      }
      int port = Integer.parseInt(m.group(1));
      HttpClient http = HttpClient.newHttpClient();
      HttpRequest.Builder req = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/v1/completions"))
          .POST(HttpRequest.BodyPublishers.ofString("{\"model\": \"model\", \"prompt\": \"a b\", \"max_tokens\": 400, \"temperature\": 0, "
              + "\"stream\": true, \"stream_options\": {\"include_usage\": true}}"));
      assertEquals(401, http.send(req.build(), HttpResponse.BodyHandlers.ofString()).statusCode());
      // The stream's headers come with its first token: once they are here the request is in flight.
      HttpResponse<java.util.stream.Stream<String>> r = http.send(req.header("Authorization", "Bearer k1").build(), HttpResponse.BodyHandlers.ofLines());
      assertEquals(200, r.statusCode());
      p.destroy(); // SIGTERM
      List<String> events = r.body().filter(l -> l.startsWith("data: ")).toList();
      assertEquals("data: [DONE]", events.get(events.size() - 1), "the stream ends whole:\n" + events + "\n" + Shell.read(log));
      JsonNode usage = new ObjectMapper().readTree(events.get(events.size() - 2).substring(6));
      assertTrue(usage.at("/usage/completion_tokens").asInt() > 0, usage.toString());
      assertTrue(p.waitFor(2, TimeUnit.MINUTES), "serve did not exit after SIGTERM:\n" + Shell.read(log));
      assertTrue(Shell.read(log).contains("stopped; every request in flight finished"), Shell.read(log));
    } finally {
      p.destroyForcibly();
    }
  }
}
