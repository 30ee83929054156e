package io.lorafleet.driver.train;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.driver.allreduce.GradientClient;
import io.lorafleet.driver.allreduce.GradientServer;
import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.CausalLM;
import io.lorafleet.worker.train.CheckpointedStep;
import io.lorafleet.worker.train.NonFiniteGradientException;
import io.lorafleet.worker.train.StepResult;
import io.lorafleet.worker.train.TrainStep;
import java.io.Serializable;
import java.util.List;
import java.util.Optional;
import org.apache.spark.BarrierTaskContext;
import org.apache.spark.TaskContext;
import org.apache.spark.resource.ResourceInformation;
import scala.collection.Iterator;
import scala.jdk.javaapi.CollectionConverters;
import scala.runtime.AbstractFunction1;

/**
 * The body of one barrier task: bind to the GPU Spark assigned (or the CPU), load the frozen base
 * once per executor, connect to the driver's gradient channel, and for every step it announces,
 * compute this rank's gradient sum and push it.
 */
final class WorkerTask extends AbstractFunction1<Iterator<Integer>, Iterator<String>> implements Serializable {
  private final TrainConfig cfg;
  private final LoraConfig lora;
  private final FaultPlan faults;
  private final int attempt;
  private final String host;
  private final int port;
  private final String jobId;
  private final byte[] secret;
  private final org.apache.spark.util.SerializableConfiguration hadoop;
  private final String dataset;

  WorkerTask(TrainConfig cfg, LoraConfig lora, String host, int port, String jobId, byte[] secret, FaultPlan faults, int attempt,
      org.apache.hadoop.conf.Configuration hadoop, String dataset) {
    this.cfg = cfg;
    this.dataset = dataset;
    this.hadoop = new org.apache.spark.util.SerializableConfiguration(hadoop);
    this.lora = lora;
    this.faults = faults;
    this.attempt = attempt;
    this.host = host;
    this.port = port;
    this.jobId = jobId;
    this.secret = secret.clone();
  }

  static Device device(TaskContext ctx) {
    ResourceInformation gpu = ctx == null ? null : ctx.resources().get("gpu").getOrElse(() -> null);
    return device(gpu == null ? new String[0] : gpu.addresses(), io.lorafleet.worker.model.Djl.engine().getGpuCount());
  }

  /**
   * The device for the GPU addresses Spark assigned this task: the first one, or the CPU when none
   * was assigned. An assigned GPU with CPU-only natives is an error, not a silent CPU run.
   */
  static Device device(String[] assigned, int gpusVisibleToDjl) {
    if (assigned.length == 0) {
      return Device.cpu();
    }
    int id;
    try {
      id = Integer.parseInt(assigned[0].trim());
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException("Spark assigned GPU address '" + assigned[0] + "', expected a device index such as 0");
    }
    if (gpusVisibleToDjl == 0) {
      throw new IllegalStateException("Spark assigned GPU " + id + " to this task but DJL's PyTorch native library sees no GPU (a CPU-only build, "
          + "or no CUDA driver); build the application jar with a CUDA native flavour (README: GPU clusters) or drop the gpu resource settings");
    }
    if (id >= gpusVisibleToDjl) {
      throw new IllegalStateException("Spark assigned GPU " + id + " but DJL sees only " + gpusVisibleToDjl + " GPU(s)");
    }
    return Device.gpu(id);
  }

  /** This rank's share of the first --eval-examples validation rows: every workers-th one, from its rank. */
  private List<io.lorafleet.datasets.arrow.Example> validationShare(CausalLM model, int rank) throws java.io.IOException {
    var split = ModelCache.split(cfg.data() + "/validation", dataset, model.config(), hadoop.value(), cfg.shuffleWindow());
    List<io.lorafleet.datasets.arrow.Example> mine = new java.util.ArrayList<>();
    for (long i = rank; i < Math.min(split.rows(), cfg.evalExamples()); i += cfg.workers()) {
      mine.add(split.row(i));
    }
    return mine;
  }

  @Override
  public Iterator<String> apply(Iterator<Integer> ignored) {
    BarrierTaskContext ctx = BarrierTaskContext.get();
    int rank = ctx.partitionId();
    Device device = device(ctx);
    CausalLM model = ModelCache.model(cfg.model(), device, hadoop.value());
    LoraModel lora = LoraModel.create(model, this.lora);
    // twice the shuffle window: the group being consumed stays cached while the next one is read
    var split = ModelCache.split(cfg.data() + "/train", dataset, model.config(), hadoop.value(), 2 * cfg.shuffleWindow());
    EpochOrder order = new EpochOrder(split.blockRows(), cfg.seed(), cfg.shuffleWindow());
    int steps = 0;
    // Read-ahead: while step s computes, the batches holding step s + 1's rows are read and decoded into
    // the split's cache (bounded at twice the shuffle window); a failed read-ahead is left for the step itself to report.
    java.util.concurrent.ExecutorService prefetch = java.util.concurrent.Executors.newSingleThreadExecutor(r -> {
      Thread t = new Thread(r, "lorafleet-prefetch-rank-" + rank);
      t.setDaemon(true);
      return t;
    });
    try (GradientClient c = GradientClient.connect(host, port, jobId, secret, rank, lora.layout().size(), cfg.timeoutMs())) {
      Optional<GradientClient.Params> p;
      while ((p = c.next()).isPresent()) {
        ctx.killTaskIfInterrupted(); // a killed task stops at the next step instead of finishing its loop
        int step = p.get().step();
        if (p.get().evaluate()) {
          StepResult v = TrainStep.evaluate(lora, p.get().values(), GlobalBatch.microBatches(validationShare(model, rank), cfg.microBatch()));
          c.pushEval(step, v.tokens(), v.lossSum());
          continue;
        }
        faults.beforeWorkerStep(step, rank, attempt);
        var mine = GlobalBatch.slice(split, order, step, cfg.globalBatch(), cfg.workers(), rank);
        if (step + 1 < cfg.steps()) {
          prefetch.execute(() -> {
            try {
              GlobalBatch.slice(split, order, step + 1, cfg.globalBatch(), cfg.workers(), rank);
            } catch (RuntimeException later) {
              // the next step reads these rows again and reports the error there
            }
          });
        }
        long dropoutSeed = cfg.dropout() > 0 ? (cfg.seed() * 1_000_003L + step) * 1_009L + rank : -1;
        long t0 = System.nanoTime();
        StepResult r;
        // fp16 compute back-propagates the driver's loss scale (fp32 needs none) and says so
        boolean fp16 = model.dtype() == DataType.FLOAT16;
        double scale = fp16 ? p.get().lossScale() : 1.0;
        int flags = fp16 ? GradientServer.FLAG_SCALED : 0;
        try {
          var micro = GlobalBatch.microBatches(mine, cfg.microBatch());
          r = cfg.gradientCheckpointing() ? CheckpointedStep.run(lora, p.get().values(), micro, dropoutSeed, scale)
              : TrainStep.run(lora, p.get().values(), micro, dropoutSeed, scale);
        } catch (NonFiniteGradientException e) {
          if (model.dtype() != DataType.FLOAT16) {
            throw e; // fp32: the step diverged
          }
          // fp16: an overflow, reported as such (never as a NaN push); the driver skips the step
          r = new StepResult(new float[lora.layout().size()], 0, 0);
          flags |= GradientServer.FLAG_OVERFLOW;
        }
        if (faults.overflows(step, rank, attempt)) {
          flags |= GradientServer.FLAG_OVERFLOW;
        }
        if (faults.poisons(step, rank, attempt)) {
          r.gradSum()[r.gradSum().length - 1] = Float.NaN;
        }
        c.push(step, r.tokens(), r.lossSum(), System.nanoTime() - t0, flags, r.gradSum());
        steps++;
      }
    } catch (java.io.IOException e) {
      throw new IllegalStateException("rank " + rank + ": gradient channel to " + host + ":" + port + " failed: " + e.getMessage(), e);
    } finally {
      prefetch.shutdownNow();
    }
    return CollectionConverters.asScala(List.of("rank " + rank + " on " + device + " ran " + steps + " steps").iterator());
  }
}
