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

  /** runs: crossed with grid: travel as one --runs argument; each run's fields override the file's, and key=value overrides reach the grid. */
  @Test
  void runsAndGridBecomeNamedRunsOfOneJob() throws Exception {
    Path job = tmp.resolve("sweep.yaml");
    Files.writeString(job, """
        model: /models/m
        data: /data/d
        out: /runs/sweep
        runs:
          - name: acme
          - name: globex
            data: /data/globex
        grid:
          lr: [1.0e-4, 3.0e-4]
          r: [8]
        """);
    CommandLine cl = new CommandLine(new Main());
    String[] args = Main.withJobFile(cl, new String[] {"train", "--config", job.toString(), "grid.r=[8,16]"});
    TrainCommand t = cl.getSubcommands().get("train").getCommand();
    cl.parseArgs(args);
    var runs = new com.fasterxml.jackson.databind.ObjectMapper().readTree(t.runs);
    assertEquals(8, runs.size());
    assertEquals("acme_lr=1.0E-4_r=8", runs.get(0).get("name").asText());
    assertEquals("globex_lr=3.0E-4_r=16", runs.get(7).get("name").asText());
    assertEquals("/data/globex", runs.get(7).get("data").asText());
    assertEquals(16, runs.get(7).get("r").asInt());
    assertEquals("/data/d", t.data, "the file's own fields stay the job's");
    Files.writeString(job, "model: /m\ndata: /d\nout: /o\nruns:\n  - {lr: 0.1}\n");
    var e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> Main.withJobFile(new CommandLine(new Main()),
        new String[] {"train", "--config", job.toString()}));
    assertEquals(job + ": every entry of 'runs' must be a mapping with a name but found {\"lr\":0.1}", e.getMessage());
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
  @Test
  void jobFilesTakePeftsOwnNames() throws Exception {
    Path job = tmp.resolve("peft.yaml");
    Files.writeString(job, """
        model: /models/m
        data: /data/d
        out: /runs/r
        r: 16
        lora_alpha: 32
        lora_dropout: 0.05
        target_modules: '.*\\.layers\\.[01]\\..*(q_proj|v_proj)'
        use_rslora: true
        bias: lora_only
        rank_pattern: {q_proj: 4, v_proj: 8}
        alpha_pattern: {v_proj: 2.5}
        layers_to_transform: [0, 1]
        init_lora_weights: false
        loraplus_lr_ratio: 16
        """);
    CommandLine cl = new CommandLine(new Main());
    cl.parseArgs(Main.withJobFile(cl, new String[] {"train", "--config", job.toString()}));
    TrainCommand t = cl.getSubcommands().get("train").getCommand();
    assertEquals(16, t.r);
    assertEquals(32.0, t.alpha);
    assertTrue(t.useRslora);
    assertEquals("lora_only", t.bias);
    assertEquals(Map.of("q_proj", 4, "v_proj", 8), t.rankPattern);
    assertEquals(Map.of("v_proj", 2.5), t.alphaPattern);
    assertEquals(java.util.List.of(0, 1), t.layersToTransform);
    assertEquals("false", t.initLoraWeights);
    assertEquals(16.0, t.loraplusLrRatio);
    assertEquals(".*\\.layers\\.[01]\\..*(q_proj|v_proj)", t.targets);
    var lora = t.tuner();
    assertTrue(lora.targetRegex(), "a string with regex characters is one regex, as PEFT takes a string");
    assertTrue(lora.useRslora());
    assertEquals("false", lora.initLoraWeights());
    assertEquals(4, lora.rankFor("model.layers.0.self_attn.q_proj"));
    assertEquals(2.5 / Math.sqrt(8), lora.scaleFor("model.layers.1.self_attn.v_proj"), 1e-12);
    Files.writeString(job, "model: m\nexclude_modules: [lm_head]\n");
    var e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
        () -> Main.withJobFile(new CommandLine(new Main()), new String[] {"train", "--config", job.toString()}));
    assertTrue(e.getMessage().contains("'exclude_modules' is a PEFT LoraConfig option that lorafleet does not support"), e.getMessage());
  }

  static TrainCommand parsed(String... args) {
    CommandLine cl = new CommandLine(new Main());
    cl.parseArgs(Main.withJobFile(cl, args));
    return cl.getSubcommands().get("train").getCommand();
  }

  /** transformers' TrainingArguments for the best model and EarlyStoppingCallback's arguments, as a job file spells them. */
  @Test
  void transformersBestModelFieldsAreTheirFlags() throws Exception {
    Path job = tmp.resolve("best.yaml");
    Files.writeString(job, "model: m\ndata: d\nout: o\neval_steps: 10\nmetric_for_best_model: eval_accuracy\ngreater_is_better: false\n"
        + "load_best_model_at_end: true\nearly_stopping_patience: 3\nearly_stopping_threshold: 0.01\n");
    var c = parsed("train", "--config", job.toString()).config();
    assertEquals(new io.lorafleet.driver.train.TrainConfig.Selection("accuracy", false, true, 3, 0.01), c.eval().best());
  }

  @Test
  void huggingFaceAndAxolotlNamesAreAliases() throws Exception {
    Path job = tmp.resolve("hf.yaml");
    Files.writeString(job, """
        model: /models/m
        data: /data/d
        out: /runs/r
        workers: 2
        learning_rate: 2.0e-4
        lr_scheduler_type: constant_with_warmup
        warmup_steps: 5
        warmup_ratio: 0.03
        max_grad_norm: 0.3
        weight_decay: 0.01
        save_steps: 25
        save_total_limit: 3
        eval_steps: 50
        max_steps: 400
        per_device_train_batch_size: 2
        gradient_accumulation_steps: 4
        num_train_epochs: 3
        adam_beta1: 0.8
        adam_beta2: 0.95
        adam_epsilon: 1.0e-6
        lora_r: 32
        lora_alpha: 64
        lora_dropout: 0.1
        lora_target_modules: [q_proj, v_proj]
        seed: 42
        """);
    TrainCommand t = parsed("train", "--config", job.toString());
    assertEquals(2e-4, t.lr);
    assertEquals("constant_with_warmup", t.schedule);
    assertEquals(5, t.warmup);
    assertEquals(0.03, t.warmupRatio);
    assertEquals(0.3, t.clip);
    assertEquals(0.01, t.weightDecay);
    assertEquals(25, t.checkpointEvery);
    assertEquals(3, t.keep);
    assertEquals(50, t.evalEvery);
    assertEquals(400, t.steps);
    assertEquals(2, t.microBatch);
    assertEquals(16, t.globalBatch, "gradient_accumulation_steps 4 x micro-batch 2 x 2 workers");
    assertEquals(3, t.epochs);
    assertEquals(0.8, t.adamBeta1);
    assertEquals(0.95, t.adamBeta2);
    assertEquals(1e-6, t.adamEpsilon);
    assertEquals(32, t.r);
    assertEquals(64.0, t.alpha);
    assertEquals(0.1, t.dropout);
    assertEquals("q_proj,v_proj", t.targets);
    assertEquals(42, t.seed);

    Files.writeString(job, "model: m\nworkers: 2\nper_device_train_batch_size: 2\ngradient_accumulation_steps: 4\nglobal-batch: 8\n");
    var e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> parsed("train", "--config", job.toString()));
    assertTrue(e.getMessage().contains("gradient_accumulation_steps 4") && e.getMessage().contains("global batch of 16")
        && e.getMessage().contains("global-batch is 8"), e.getMessage());
    Files.writeString(job, "model: m\nnum_train_epochs: 2.5\n");
    e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> parsed("train", "--config", job.toString()));
    assertTrue(e.getMessage().contains("num_train_epochs") && e.getMessage().contains("2.5"), e.getMessage());
  }

  @Test
  void keyValueOverridesFollowTheCommand() throws Exception {
    Path job = tmp.resolve("job.yaml");
    Files.writeString(job, "model: /models/m\ndata: /data/d\nout: /runs/r\nlr: 0.1\nsteps: 5\n");
    TrainCommand t = parsed("train", "--config", job.toString(), "lr=1e-4", "target_modules=[q_proj,k_proj]", "use_rslora=true", "learning_rate=3e-4",
        "--spark-conf", "spark.a=b", "--steps", "9");
    assertEquals(3e-4, t.lr, "overrides apply in order, after the file");
    assertEquals("q_proj,k_proj", t.targets);
    assertTrue(t.useRslora);
    assertEquals(9, t.steps, "flags still win");
    assertEquals(Map.of("spark.a", "b"), t.sparkConf, "an option's own key=value value stays the option's");
    t = parsed("train", "--model", "m", "--data", "d", "--out", "o", "lora_r=4");
    assertEquals(4, t.r, "overrides work without a job file");
  }
}
