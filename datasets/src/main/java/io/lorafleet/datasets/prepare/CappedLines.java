package io.lorafleet.datasets.prepare;

import java.io.DataInput;
import java.io.DataOutput;
import java.io.IOException;
import java.io.InputStream;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.io.LongWritable;
import org.apache.hadoop.io.Text;
import org.apache.hadoop.io.Writable;
import org.apache.hadoop.io.compress.CompressionCodec;
import org.apache.hadoop.io.compress.CompressionCodecFactory;
import org.apache.hadoop.mapred.FileSplit;
import org.apache.hadoop.mapred.InputSplit;
import org.apache.hadoop.mapred.JobConf;
import org.apache.hadoop.mapred.RecordReader;
import org.apache.hadoop.mapred.Reporter;
import org.apache.hadoop.mapred.FileInputFormat;
import org.apache.hadoop.util.LineReader;

/**
 * JSONL lines with bounded memory: split as Hadoop's TextInputFormat splits (a compressed file is one
 * split, read whole through its codec), but a line
 * longer than {@value #CAP_KEY} bytes keeps only its first bytes and reports its full size, so a
 * 400 MB line costs the cap, not 400 MB, and becomes a quarantined record with its line number
 * instead of an executor out of memory. (Hadoop's own maxLineLength skips such lines silently, which
 * would also shift every later line number.)
 */
public final class CappedLines extends FileInputFormat<LongWritable, CappedLines.Line> {
  /** The Hadoop conf key holding the cap in bytes. */
  public static final String CAP_KEY = "lorafleet.prepare.max-record-bytes";

  /** A line: its first bytes (at most cap + 1) and its full length in bytes, newline excluded. */
  public static final class Line implements Writable {
    private final Text head = new Text();
    private long length;

    public byte[] bytes() {
      return head.copyBytes();
    }

    public long length() {
      return length;
    }

    @Override
    public void write(DataOutput out) throws IOException {
      head.write(out);
      out.writeLong(length);
    }

    @Override
    public void readFields(DataInput in) throws IOException {
      head.readFields(in);
      length = in.readLong();
    }
  }

  @Override
  protected boolean isSplitable(FileSystem fs, Path file) {
    return new CompressionCodecFactory(fs.getConf()).getCodec(file) == null;
  }

  @Override
  public RecordReader<LongWritable, Line> getRecordReader(InputSplit split, JobConf job, Reporter reporter) throws IOException {
    return new Reader((FileSplit) split, job, job.getInt(CAP_KEY, 64 << 20));
  }

  /** The standard line-split protocol: a split owns the lines that start in (start, end]; the first split also the one at 0. */
  static final class Reader implements RecordReader<LongWritable, Line> {
    private final InputStream in;
    private final LineReader lines;
    private final long start;
    private final long end;
    private final int cap;
    private long pos;

    Reader(FileSplit split, Configuration conf, int cap) throws IOException {
      Path file = split.getPath();
      FileSystem fs = file.getFileSystem(conf);
      CompressionCodec codec = new CompressionCodecFactory(conf).getCodec(file);
      var raw = fs.open(file);
      this.cap = cap;
      if (codec != null) { // not splittable (TextInputFormat made one split of the file): read it whole
        in = codec.createInputStream(raw);
        start = 0;
        end = Long.MAX_VALUE;
      } else {
        raw.seek(split.getStart());
        in = raw;
        start = split.getStart();
        end = split.getStart() + split.getLength();
      }
      lines = new LineReader(in, conf);
      long p = start;
      if (start != 0) {
        p += lines.readLine(new Text(), 0, Integer.MAX_VALUE); // the previous split owns this partial line
      }
      pos = p;
    }

    @Override
    public boolean next(LongWritable key, Line value) throws IOException {
      if (pos > end) {
        return false;
      }
      int consumed = lines.readLine(value.head, cap + 1, Integer.MAX_VALUE);
      if (consumed == 0) {
        return false;
      }
      key.set(pos);
      pos += consumed;
      // consumed counts the line terminator too; stored bytes are capped at cap + 1
      value.length = value.head.getLength() <= cap ? value.head.getLength() : consumed; // a long line: its span, line break included
      return true;
    }

    @Override
    public LongWritable createKey() {
      return new LongWritable();
    }

    @Override
    public Line createValue() {
      return new Line();
    }

    @Override
    public long getPos() {
      return pos;
    }

    @Override
    public float getProgress() {
      return end == start || end == Long.MAX_VALUE ? 0f : Math.min(1f, (pos - start) / (float) (end - start));
    }

    @Override
    public void close() throws IOException {
      lines.close();
    }
  }
}
