package io.lorafleet.datasets.arrow;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.SequenceInputStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * Random access to a prepared split on any Hadoop filesystem (file://, hdfs://, s3a://, or a plain
 * path), reading only the record batches asked for. Rows are numbered across the split's shards in
 * name order; a row is fetched by seeking to its batch (from the shard's {@link ShardIndex}) and
 * decoding that batch alone. The last {@code cacheBlocks} decoded batches are kept, so memory is
 * bounded by that window whatever the size of the split.
 */
public final class SplitReader {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final byte[] END_OF_STREAM = {(byte) 0xff, (byte) 0xff, (byte) 0xff, (byte) 0xff, 0, 0, 0, 0};

  private final FileSystem fs;
  private final String split;
  private final List<Path> shards = new ArrayList<>();
  private final List<ShardIndex> indexes = new ArrayList<>();
  /** Each shard's schema message, read on the shard's first use. */
  private byte[][] schemas;
  /** firstRow[b] is the split-wide number of block b's first row; blocks are numbered across shards. */
  private final long[] firstRow;
  private final int[] shardOf;
  private final int[] blockInShard;
  private final TokenLimits limits;
  private final Map<Integer, List<Example>> cache;

  private SplitReader(FileSystem fs, Path dir, TokenLimits limits, int cacheBlocks) throws IOException {
    this.fs = fs;
    this.split = dir.getName();
    this.limits = limits;
    this.cache = new LinkedHashMap<>(16, 0.75f, true) {
      @Override
      protected boolean removeEldestEntry(Map.Entry<Integer, List<Example>> e) {
        return size() > cacheBlocks;
      }
    };
    FileStatus[] files = fs.listStatus(dir, p -> p.getName().endsWith(".arrow") && !p.getName().startsWith("."));
    Arrays.sort(files, (a, b) -> a.getPath().getName().compareTo(b.getPath().getName()));
    int blocks = 0;
    for (FileStatus f : files) {
      ShardIndex idx = index(f.getPath(), f.getLen());
      shards.add(f.getPath());
      indexes.add(idx);
      blocks += idx.blocks().size();
    }
    firstRow = new long[blocks + 1];
    shardOf = new int[blocks];
    blockInShard = new int[blocks];
    int b = 0;
    for (int s = 0; s < indexes.size(); s++) {
      for (int k = 0; k < indexes.get(s).blocks().size(); k++) {
        shardOf[b] = s;
        blockInShard[b] = k;
        firstRow[b + 1] = firstRow[b] + indexes.get(s).blocks().get(k).rows();
        b++;
      }
    }
    schemas = new byte[shards.size()][];
  }

  /**
   * Opens a split directory (a URI or a plain path).
   *
   * @param limits what the model accepts; rows are checked as they are decoded
   * @param cacheBlocks how many decoded batches to keep
   */
  public static SplitReader open(String dir, Configuration conf, TokenLimits limits, int cacheBlocks) throws IOException {
    Path p = new Path(dir);
    FileSystem fs = p.getFileSystem(conf);
    if (!fs.isDirectory(p)) {
      throw new IllegalArgumentException(dir + ": no such split directory; run lorafleet prepare first");
    }
    return new SplitReader(fs, p, limits, Math.max(1, cacheBlocks));
  }

  private ShardIndex index(Path shard, long size) throws IOException {
    Path idx = new Path(shard.getParent(), shard.getName() + ShardIndex.SUFFIX);
    if (fs.exists(idx)) {
      ShardIndex i;
      try (InputStream in = fs.open(idx)) {
        i = ShardIndex.fromJson(JSON.readTree(in), idx.toString());
      }
      if (i.streamBytes() == size) {
        return i;
      }
      // an index that does not end where its shard ends belongs to another version of it: scan instead
    }
    try (InputStream in = fs.open(shard)) { // no index (a shard written by HF datasets): scan its message headers
      return ShardIndex.scan(in, shard.toString());
    }
  }

  public long rows() {
    return firstRow[firstRow.length - 1];
  }

  /** Row counts of the batches, in split order: the units {@code EpochOrder} shuffles. */
  public int[] blockRows() {
    int[] r = new int[shardOf.length];
    for (int b = 0; b < r.length; b++) {
      r[b] = (int) (firstRow[b + 1] - firstRow[b]);
    }
    return r;
  }

  /** Row {@code id} of the split (0-based across shards). */
  public synchronized Example row(long id) throws IOException {
    if (id < 0 || id >= rows()) {
      throw new IndexOutOfBoundsException("row " + id + " of split " + split + ", which holds " + rows() + " rows");
    }
    int b = Arrays.binarySearch(firstRow, id);
    b = b >= 0 ? b : -b - 2;
    while (firstRow[b + 1] == firstRow[b]) { // skip empty batches
      b++;
    }
    return block(b).get((int) (id - firstRow[b]));
  }

  /** Rows [from, to) in order. */
  public synchronized List<Example> rows(long from, long to) throws IOException {
    List<Example> out = new ArrayList<>();
    for (long i = from; i < to; i++) {
      out.add(row(i));
    }
    return out;
  }

  private List<Example> block(int b) throws IOException {
    List<Example> hit = cache.get(b);
    if (hit != null) {
      return hit;
    }
    int s = shardOf[b];
    ShardIndex idx = indexes.get(s);
    ShardIndex.Block blk = idx.blocks().get(blockInShard[b]);
    byte[] body = new byte[Math.toIntExact(blk.length())];
    try (FSDataInputStream in = fs.open(shards.get(s))) {
      if (schemas[s] == null) {
        schemas[s] = new byte[Math.toIntExact(idx.schemaBytes())];
        in.readFully(0, schemas[s]);
      }
      in.readFully(blk.offset(), body);
    }
    // the schema message, this one batch and the end-of-stream marker make a valid IPC stream
    InputStream one = new SequenceInputStream(java.util.Collections.enumeration(List.of(new ByteArrayInputStream(schemas[s]),
        new ByteArrayInputStream(body), new ByteArrayInputStream(END_OF_STREAM))));
    String where = "split " + split + ", shard " + shards.get(s);
    List<Example> rows = ShardReader.read(one, where, limits, rowInShard(b));
    cache.put(b, rows);
    return rows;
  }

  /** The shard-relative number of block b's first row (for error messages). */
  private long rowInShard(int b) {
    int first = b - blockInShard[b];
    return firstRow[b] - firstRow[first];
  }
}
