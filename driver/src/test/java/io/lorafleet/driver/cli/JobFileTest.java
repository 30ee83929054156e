package io.lorafleet.driver.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

class JobFileTest {
  @TempDir Path tmp;

  @Test
  void jobFileFieldsBecomeFlagsAndTheCommandLineWins() throws Exception {
    Path job = tmp.resolve("job.yaml");
    Files.writeString(job, """
        # lorafleet train --config job.yaml
        model: /models/m
        data: /data/d
        out: /runs/r
        workers: 3
        global-batch: 12
        steps: 100
        target-modules: [q_proj, v_proj]
        resume: true
        spark:
          spark.executor.cores: 4
          spark.task.resource.gpu.amount: 1
        """);
    CommandLine cl = new CommandLine(new Main());
    String[] args = Main.withJobFile(cl, new String[] {"train", "--config", job.toString(), "--steps", "7"});
    TrainCommand t = cl.getSubcommands().get("train").getCommand();
    cl.parseArgs(args);
    assertEquals("/models/m", t.model);
    assertEquals(3, t.workers);
    assertEquals(7, t.steps, "the command line overrides the file");
    assertEquals("q_proj,v_proj", t.targets);
    assertEquals("true", t.resume);
    assertEquals(Map.of("spark.executor.cores", "4", "spark.task.resource.gpu.amount", "1"), t.sparkConf);
  }

  @Test
  void badJobFilesAndFlagsAreOneLineErrors() throws Exception {
    Path job = tmp.resolve("bad.yaml");
    Files.writeString(job, "model: m\nlearning-rate: 0.1\n");
    PrintStream old = System.err;
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    System.setErr(new PrintStream(err, true));
    try {
      assertEquals(2, Main.execute("train", "--config", job.toString()));
      assertEquals(2, Main.execute("--bogus"));
      assertEquals(2, Main.execute("train", "--model", "m", "--data", "d", "--out", "o", "--r", "0"));
    } finally {
      System.setErr(old);
    }
    String[] lines = err.toString().strip().split("\n");
    assertEquals(3, lines.length, err.toString());
    assertTrue(lines[0].contains("unknown field 'learning-rate'") && lines[0].contains("lr"), lines[0]);
    assertTrue(lines[1].contains("Unknown option: '--bogus'"), lines[1]);
    assertTrue(lines[2].contains("r must be > 0 but found 0"), lines[2]);
  }

  @Test
  void initAdapterFillsTheLoraFlagsNotGivenFromTheAdapter() throws Exception {
    Path a = tmp.resolve("adapter");
    Files.createDirectories(a);
    Files.writeString(a.resolve("adapter_config.json"), "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 32, \"target_modules\": [\"q_proj\", \"v_proj\"]}");
    CommandLine cl = new CommandLine(new Main());
    cl.parseArgs("train", "--model", "m", "--data", "d", "--out", "o", "--init-adapter", a.toString());
    TrainCommand t = cl.getSubcommands().get("train").getCommand();
    t.adoptInitAdapter();
    assertEquals(4, t.r);
    assertEquals(32.0, t.alpha);
    assertEquals("q_proj,v_proj", t.targets);
    cl = new CommandLine(new Main());
    cl.parseArgs("train", "--model", "m", "--data", "d", "--out", "o", "--init-adapter", a.toString(), "--lora-alpha", "8");
    t = cl.getSubcommands().get("train").getCommand();
    t.adoptInitAdapter();
    assertEquals(8.0, t.alpha, "a flag given stays, so that the trainer refuses the contradiction by name");
    assertEquals(4, t.r);
  }
}
