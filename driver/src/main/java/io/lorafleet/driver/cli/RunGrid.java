package io.lorafleet.driver.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

/**
 * A train job file's {@code runs:} and {@code grid:} fields, expanded into the named runs of one
 * multi-run job. {@code runs:} lists mappings of train fields, each with a {@code name};
 * {@code grid:} maps fields to lists of values (Spark ML's ParamGridBuilder, as YAML), and every
 * combination becomes a run named by its values ({@code lr=0.001_r=8}); with both, each listed
 * run is crossed with the grid. A run's fields override the file's top-level ones.
 */
final class RunGrid {
  private static final ObjectMapper JSON = new ObjectMapper();

  private RunGrid() {}

  /** The runs of {@code runs} crossed with {@code grid} (either may be null), each a mapping with its name. */
  static ArrayNode expand(JsonNode runs, JsonNode grid, String file) {
    List<ObjectNode> bases = new ArrayList<>();
    if (runs == null) {
      bases.add(JSON.createObjectNode());
    } else {
      if (!runs.isArray() || runs.isEmpty()) {
        throw new IllegalArgumentException(file + ": field 'runs' must be a non-empty list of mappings, each with a name, but found " + runs);
      }
      for (JsonNode r : runs) {
        if (!r.isObject() || !r.path("name").isTextual() || r.path("name").asText().isEmpty()) {
          throw new IllegalArgumentException(file + ": every entry of 'runs' must be a mapping with a name but found " + r);
        }
        bases.add((ObjectNode) r.deepCopy());
      }
    }
    List<ObjectNode> points = new ArrayList<>(List.of(JSON.createObjectNode()));
    if (grid != null) {
      if (!grid.isObject() || grid.isEmpty()) {
        throw new IllegalArgumentException(file + ": field 'grid' must map train fields to lists of values but found " + grid);
      }
      for (Iterator<Map.Entry<String, JsonNode>> it = grid.fields(); it.hasNext(); ) {
        Map.Entry<String, JsonNode> axis = it.next();
        JsonNode values = axis.getValue();
        if (values.isArray() && values.isEmpty()) {
          throw new IllegalArgumentException(file + ": grid field '" + axis.getKey() + "' lists no values");
        }
        List<ObjectNode> next = new ArrayList<>();
        for (ObjectNode p : points) {
          for (JsonNode v : values.isArray() ? values : JSON.createArrayNode().add(values)) {
            ObjectNode q = p.deepCopy();
            q.set(axis.getKey(), v);
            next.add(q);
          }
        }
        points = next;
      }
    }
    ArrayNode out = JSON.createArrayNode();
    for (ObjectNode b : bases) {
      for (ObjectNode p : points) {
        ObjectNode run = b.deepCopy();
        List<String> parts = new ArrayList<>();
        if (b.has("name")) {
          parts.add(b.get("name").asText());
        }
        for (Iterator<Map.Entry<String, JsonNode>> it = p.fields(); it.hasNext(); ) {
          Map.Entry<String, JsonNode> f = it.next();
          run.set(f.getKey(), f.getValue());
          parts.add(f.getKey() + "=" + (f.getValue().isArray() ? String.join(",", texts(f.getValue())) : f.getValue().asText()));
        }
        run.put("name", String.join("_", parts));
        out.add(run);
      }
    }
    return out;
  }

  private static List<String> texts(JsonNode array) {
    List<String> t = new ArrayList<>();
    array.forEach(x -> t.add(x.asText()));
    return t;
  }
}
