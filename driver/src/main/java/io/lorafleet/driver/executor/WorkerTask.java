package io.lorafleet.driver.executor;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.driver.allreduce.GradientClient;
import io.lorafleet.driver.allreduce.GradientServer;
import io.lorafleet.driver.allreduce.SumTree;
import io.lorafleet.driver.allreduce.Transport;
import io.lorafleet.driver.kernels.Kernels;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.Dropout;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.train.RecomputeStep;
import io.lorafleet.worker.train.NonFiniteGradientException;
import io.lorafleet.worker.train.StepResult;
import io.lorafleet.worker.train.TrainStep;
import java.io.Serializable;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.function.BooleanSupplier;
import org.apache.spark.BarrierTaskContext;
import org.apache.spark.TaskContext;
import org.apache.spark.resource.ResourceInformation;
import scala.collection.Iterator;
import scala.jdk.javaapi.CollectionConverters;
import scala.runtime.AbstractFunction1;

/**
 * The body of one barrier task: bind to the GPU Spark assigned (or the CPU), load the frozen base
 * once per executor, and for every step the driver announces compute this rank's gradient sum. The
 * tasks of one executor form a group ({@link ExecutorGroup}): its leader alone talks to the driver
 * and pushes the group's sum.
 */
public final class WorkerTask extends AbstractFunction1<Iterator<Integer>, Iterator<String>> implements Serializable {
  private final WorkerJob job;
  private final org.apache.spark.util.SerializableConfiguration hadoop;

  public WorkerTask(WorkerJob job, org.apache.hadoop.conf.Configuration hadoop) {
    this.job = job;
    this.hadoop = new org.apache.spark.util.SerializableConfiguration(hadoop);
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
  private List<io.lorafleet.datasets.arrow.Example> validationShare(LanguageModel model, int rank) throws java.io.IOException {
    var split = ModelCache.split(job.data().path() + "/validation", job.data().fingerprint(), model.config(), hadoop.value(), job.data().shuffleWindow());
    List<io.lorafleet.datasets.arrow.Example> mine = new java.util.ArrayList<>();
    for (long i = rank; i < Math.min(split.rows(), job.data().evalExamples()); i += job.data().workers()) {
      mine.add(split.row(i));
    }
    return mine;
  }

  /** Where this task sits: its rank (which rows and dropout seeds it owns) and the tree node it pushes with. */
  record Placement(int rank, SumTree.Node node) {
    boolean leader() {
      return rank == node.lo();
    }
  }

  /**
   * Ranks follow the executors: every task reports its executor, and rank r is the r-th task in
   * (executor, partition) order, so each executor's tasks hold consecutive ranks. With pre-reduction
   * they push as the largest tree nodes inside that run; without it, each rank alone. Rows, dropout
   * and the summation order are keyed by rank, so the update does not depend on the placement.
   */
  static Placement place(String[] executors, int partition, boolean preReduce) {
    int n = executors.length;
    Integer[] order = java.util.stream.IntStream.range(0, n).boxed().toArray(Integer[]::new);
    java.util.Arrays.sort(order, java.util.Comparator.<Integer, String>comparing(p -> executors[p]).thenComparing(p -> p));
    int rank = java.util.Arrays.asList(order).indexOf(partition);
    if (!preReduce) {
      return new Placement(rank, new SumTree.Node(rank, rank + 1));
    }
    java.util.BitSet mine = new java.util.BitSet(n);
    for (int r = 0; r < n; r++) {
      if (executors[order[r]].equals(executors[partition])) {
        mine.set(r);
      }
    }
    SumTree.Node node = SumTree.cover(n, mine).stream().filter(x -> x.contains(rank)).findFirst().orElseThrow();
    return new Placement(rank, node);
  }

  @Override
  public Iterator<String> apply(Iterator<Integer> ignored) {
    BarrierTaskContext ctx = BarrierTaskContext.get();
    boolean preReduce = job.channel().preReduce() && job.data().workers() > 1;
    String executor = org.apache.spark.SparkEnv.get().executorId();
    // one allGather per stage (about a second): where every task runs
    Placement at = place(preReduce ? ctx.allGather(executor) : sameExecutor(job.data().workers()), ctx.partitionId(), preReduce);
    int rank = at.rank();
    Device device = device(ctx);
    LanguageModel model = ModelCache.model(job.base().model(), device, hadoop.value(), job.base().quantize(), job.base().labels());
    LoraModel lora = LoraModel.create(model, job.lora());
    // twice the shuffle window: the group being consumed stays cached while the next one is read
    var split = ModelCache.split(job.data().path() + "/train", job.data().fingerprint(), model.config(), hadoop.value(), 2 * job.data().shuffleWindow());
    EpochOrder order = new EpochOrder(split.blockRows(), job.data().seed(), job.data().shuffleWindow());
    // Read-ahead: while step s computes, the batches holding step s + 1's rows are read and decoded into
    // the split's cache (bounded at twice the shuffle window); a failed read-ahead is left for the step itself to report.
    java.util.concurrent.ExecutorService prefetch = java.util.concurrent.Executors.newSingleThreadExecutor(r -> {
      Thread t = new Thread(r, "lorafleet-prefetch-rank-" + rank);
      t.setDaemon(true);
      return t;
    });
    Steps work = new Steps(model, lora, split, order, rank, prefetch);
    ExecutorGroup group = ExecutorGroup.join(job.channel().jobId(), at.node(), job.channel().timeoutMs());
    BooleanSupplier cancelled = ctx::isInterrupted;
    int steps = 0;
    try {
      if (at.leader()) {
        steps = lead(group, work, cancelled);
      } else {
        steps = follow(group, work, cancelled);
      }
    } catch (java.io.IOException | RuntimeException e) {
      group.fail(e);
      if (e instanceof RuntimeException re) {
        throw re;
      }
      throw new IllegalStateException("rank " + rank + ": gradient channel to " + job.channel().host() + ":" + job.channel().port() + " failed: " + e.getMessage(), e);
    } finally {
      prefetch.shutdownNow();
      if (at.leader()) {
        ExecutorGroup.leave(job.channel().jobId(), at.node());
      }
    }
    return CollectionConverters.asScala(List.of("rank " + rank + " (" + at.node() + ", executor " + executor + ") on " + device + " ran " + steps
        + " steps").iterator());
  }

  private static String[] sameExecutor(int n) {
    String[] all = new String[n];
    java.util.Arrays.fill(all, "");
    return all;
  }

  /** The leader: the only connection to the driver; pushes its node's sum. */
  private int lead(ExecutorGroup group, Steps work, BooleanSupplier cancelled) throws java.io.IOException {
    SumTree.Node node = group.node();
    int steps = 0;
    WorkerJob.Channel ch = job.channel();
    try (GradientClient c = GradientClient.connect(ch.host(), ch.port(), ch.jobId(), ch.secret(), node, work.lora.layout().size(), ch.timeoutMs(),
        Transport.parse(ch.transport()))) {
      Optional<GradientClient.Params> p;
      while ((p = c.next()).isPresent()) {
        if (p.get().initialize()) { // DoRA: magnitudes from the base weights this executor holds
          c.pushInit(work.lora.withBaseValues(p.get().values()));
          continue;
        }
        group.publish(p);
        ExecutorGroup.Contribution own = work.run(p.get());
        Map<Integer, ExecutorGroup.Contribution> all = new HashMap<>(group.gather(cancelled));
        all.put(own.rank(), own);
        if (p.get().evaluate()) { // each candidate's scores added over this executor's ranks, in rank order
          List<byte[]> ranks = new java.util.ArrayList<>();
          for (int r = node.lo(); r < node.hi(); r++) {
            ranks.add(all.get(r).scores());
          }
          c.pushEval(p.get().step(), p.get().candidates(), job.data().scorer().add(ranks));
          continue;
        }
        Map<SumTree.Node, Double> loss = new HashMap<>();
        long tokens = 0;
        long inputTokens = 0;
        long compute = 0;
        int flags = 0;
        for (ExecutorGroup.Contribution x : all.values()) {
          loss.put(new SumTree.Node(x.rank(), x.rank() + 1), x.lossSum());
          tokens += x.tokens();
          inputTokens += x.inputTokens();
          compute = Math.max(compute, x.computeNanos());
          flags |= x.flags();
        }
        double lossSum = SumTree.sum(node, loss::get);
        Map<SumTree.Node, float[]> grads = new HashMap<>();
        int nonFinite = -1;
        for (int r = node.lo(); r < node.hi(); r++) { // before the sum, which would hide whose it was
          float[] g = all.get(r).gradSum();
          grads.put(new SumTree.Node(r, r + 1), g);
          if (nonFinite < 0 && !node.leaf() && (flags & GradientServer.FLAG_OVERFLOW) == 0
              && Kernels.firstNonFinite(g, 0, g.length) >= 0) {
            nonFinite = r;
          }
        }
        float[] sum = node.leaf() ? own.gradSum() : sumOf(node, grads);
        c.push(p.get().step(), tokens, inputTokens, lossSum, compute, flags, nonFinite, sum);
        steps++;
      }
      group.publish(Optional.empty());
    }
    return steps;
  }

  /**
   * Adds the members' gradients over the tree, in parallel chunks (elementwise, so any chunking gives
   * the same bits), into the buffer of the node's first rank, which holds the sum afterwards.
   */
  private static float[] sumOf(SumTree.Node node, Map<SumTree.Node, float[]> grads) {
    float[] first = grads.get(new SumTree.Node(node.lo(), node.lo() + 1));
    Kernels.chunks(first.length, (from, to) -> SumTree.sum(node, grads, from, to));
    return first;
  }

  /** A member: computes what the leader hands it, and hands back its result. */
  private int follow(ExecutorGroup group, Steps work, BooleanSupplier cancelled) throws java.io.IOException {
    int steps = 0;
    long seen = 0;
    while (true) {
      ExecutorGroup.Round r = group.next(seen, cancelled);
      seen = r.number();
      if (r.params().isEmpty()) {
        return steps;
      }
      group.contribute(seen, work.run(r.params().get()));
      steps += r.params().get().evaluate() ? 0 : 1;
    }
  }

  /** One rank's work for a broadcast: a training step's gradient sum, or its share of the validation loss. */
  private final class Steps {
    private final LanguageModel model;
    private final LoraModel lora;
    private final io.lorafleet.datasets.arrow.SplitReader split;
    private final EpochOrder order;
    private final int rank;
    private final java.util.concurrent.ExecutorService prefetch;

    Steps(LanguageModel model, LoraModel lora, io.lorafleet.datasets.arrow.SplitReader split, EpochOrder order, int rank,
        java.util.concurrent.ExecutorService prefetch) {
      this.model = model;
      this.lora = lora;
      this.split = split;
      this.order = order;
      this.rank = rank;
      this.prefetch = prefetch;
    }

    ExecutorGroup.Contribution run(GradientClient.Params p) throws java.io.IOException {
      BarrierTaskContext.get().killTaskIfInterrupted(); // a killed task stops at the next step instead of finishing its loop
      int step = p.step();
      if (p.evaluate()) { // every candidate scored in one mixed-adapter pass, as eval --run scores them
        List<float[]> candidates = new java.util.ArrayList<>();
        for (int k = 0; k < p.candidates(); k++) {
          candidates.add(p.candidate(k));
        }
        byte[] scores = job.data().scorer().score(model, lora, candidates, validationShare(model, rank), job.data().microBatch(), job.data().evalGenerates());
        return new ExecutorGroup.Contribution(rank, new float[0], 0, 0, 0, 0, 0, scores);
      }
      job.faults().beforeWorkerStep(step, rank, job.attempt());
      var mine = GlobalBatch.slice(split, order, step, job.data().globalBatch(), job.data().workers(), rank);
      if (step + 1 < job.data().steps()) {
        prefetch.execute(() -> {
          try {
            GlobalBatch.slice(split, order, step + 1, job.data().globalBatch(), job.data().workers(), rank);
          } catch (RuntimeException later) {
            // the next step reads these rows again and reports the error there
          }
        });
      }
      // the run's seed alone: each row's masks are keyed by its position in the data order, so no worker or step enters them
      boolean drops = job.lora().loraDropout() > 0 || job.base().modelDropout();
      var dropout = new Dropout.Plan(drops ? (job.data().seed() * 1_000_003L) & Long.MAX_VALUE : -1, job.base().modelDropout());
      long t0 = System.nanoTime();
      StepResult r;
      // fp16 compute back-propagates the driver's loss scale (fp32 needs none) and says so
      boolean fp16 = model.dtype() == DataType.FLOAT16;
      double scale = job.faults().diverges(step, rank, job.attempt()) ? Double.NaN : fp16 ? p.lossScale() : 1.0;
      int flags = fp16 ? GradientServer.FLAG_SCALED : 0;
      try {
        var micro = GlobalBatch.microBatches(mine, job.data().microBatch(),
            GlobalBatch.firstPosition(step, job.data().globalBatch(), job.data().workers(), rank));
        // the checkpointed step recomputes a causal decoder's pieces; an encoder's step is the plain one
        r = job.base().gradientCheckpointing() && !model.config().arch().encoder() ? RecomputeStep.run(lora, p.values(), micro, dropout, scale)
            : TrainStep.run(lora, p.values(), micro, dropout, scale);
      } catch (NonFiniteGradientException e) {
        r = new StepResult(new float[lora.layout().size()], 0, 0);
        if (fp16) { // an overflow, reported as such (never as a NaN push); the driver skips the step
          flags |= GradientServer.FLAG_OVERFLOW;
        } else { // fp32: the step diverged. The push marks where, so the driver refuses the step naming this rank and tensor
          r.gradSum()[Math.max(0, e.at())] = Float.NaN;
        }
      }
      if (job.faults().overflows(step, rank, job.attempt())) {
        flags |= GradientServer.FLAG_OVERFLOW;
      }
      if (job.faults().poisons(step, rank, job.attempt())) {
        r.gradSum()[r.gradSum().length - 1] = Float.NaN;
      }
      long inputTokens = 0; // the rows' own tokens: padding is the batch's, not the data's
      for (var e : mine) {
        inputTokens += e.inputIds().length;
      }
      return new ExecutorGroup.Contribution(rank, r.gradSum(), r.tokens(), inputTokens, r.lossSum(), System.nanoTime() - t0, flags);
    }
  }
}
