package io.lorafleet.driver.executor;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import io.lorafleet.driver.allreduce.GradientClient;
import io.lorafleet.driver.allreduce.SumTree;
import io.lorafleet.driver.allreduce.Transport;
import io.lorafleet.driver.kernels.Kernels;
import io.lorafleet.worker.lora.LoraModel;
import io.lorafleet.worker.model.Dropout;
import io.lorafleet.worker.model.LanguageModel;
import io.lorafleet.worker.train.RecomputeStep;
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
 * once per executor, and for every step the driver announces compute the gradients of this rank's
 * share of the step's slots ({@link GlobalBatch}), one micro-batch a slot, added over the slot tree
 * ({@link SumTree}). The tasks of one executor form a group ({@link ExecutorGroup}): its leader
 * alone talks to the driver and pushes the sums of the tree nodes inside the group's slots.
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

  /**
   * Where this task sits: its rank, the slots it computes, and the peer it pushes with: the slots of
   * its group (its executor's ranks, or itself alone) and how many ranks the group has.
   */
  record Placement(int rank, SumTree.Node slots, SumTree.Node group, int members) {
    boolean leader() {
      return slots.lo() == group.lo();
    }
  }

  /**
   * Ranks follow the executors: every task reports its executor, and rank r is the r-th task in
   * (executor, partition) order, so each executor's tasks hold consecutive ranks and so consecutive
   * slots. With pre-reduction they push as one peer for the union of their slots; without it, each
   * rank alone. Rows, dropout and the summation order are keyed by slot, so the update depends on
   * neither the placement nor the number of workers.
   */
  static Placement place(String[] executors, int partition, boolean preReduce, int slots) {
    int n = executors.length;
    Integer[] order = java.util.stream.IntStream.range(0, n).boxed().toArray(Integer[]::new);
    java.util.Arrays.sort(order, java.util.Comparator.<Integer, String>comparing(p -> executors[p]).thenComparing(p -> p));
    int rank = java.util.Arrays.asList(order).indexOf(partition);
    SumTree.Node mine = GlobalBatch.share(slots, n, rank);
    if (!preReduce) {
      return new Placement(rank, mine, mine, 1);
    }
    int first = rank;
    while (first > 0 && executors[order[first - 1]].equals(executors[partition])) {
      first--;
    }
    int last = rank;
    while (last + 1 < n && executors[order[last + 1]].equals(executors[partition])) {
      last++;
    }
    SumTree.Node group = new SumTree.Node(GlobalBatch.share(slots, n, first).lo(), GlobalBatch.share(slots, n, last).hi());
    return new Placement(rank, mine, group, last - first + 1);
  }

  @Override
  public Iterator<String> apply(Iterator<Integer> ignored) {
    BarrierTaskContext ctx = BarrierTaskContext.get();
    WorkerJob.Data shape = job.shape();
    boolean preReduce = job.channel().preReduce() && shape.workers() > 1;
    String executor = org.apache.spark.SparkEnv.get().executorId();
    // one allGather per stage (about a second): where every task runs
    int slots = shape.slots();
    Placement at = place(preReduce ? ctx.allGather(executor) : sameExecutor(shape.workers()), ctx.partitionId(), preReduce, slots);
    int rank = at.rank();
    Device device = device(ctx); // loads the engine
    // PyTorch's intra-op threads, set on this thread (which runs every forward and backward): the
    // same on every executor, so a slot's gradient does not depend on the machine shape it lands on
    ai.djl.pytorch.jni.JniUtils.setNumThreads(job.base().intraOpThreads());
    LanguageModel model = ModelCache.model(job.base().model(), device, hadoop.value(), job.base().quantize(), job.base().labels());
    // Read-ahead: while step s computes, the batches holding step s + 1's rows are read and decoded into
    // the split's cache (bounded at twice the shuffle window); a failed read-ahead is left for the step itself to report.
    java.util.concurrent.ExecutorService prefetch = java.util.concurrent.Executors.newSingleThreadExecutor(r -> {
      Thread t = new Thread(r, "lorafleet-prefetch-rank-" + rank);
      t.setDaemon(true);
      return t;
    });
    // every run's adapter over the one base, each reading its own data
    List<Steps> work = new java.util.ArrayList<>();
    for (WorkerJob.Run run : job.runs()) {
      int index = work.size();
      LoraModel lora = LoraModel.create(model, run.lora());
      // twice the shuffle window: the group being consumed stays cached while the next one is read
      var split = ModelCache.split(run.data().path() + "/train", run.data().fingerprint(), model.config(), hadoop.value(), 2 * run.data().shuffleWindow());
      EpochOrder order = new EpochOrder(split.blockRows(), run.data().seed(), run.data().shuffleWindow());
      work.add(new Steps(index, run, model, lora, split, order, at, slots, prefetch));
    }
    ExecutorGroup group = ExecutorGroup.join(job.channel().jobId(), at.group(), at.members(), job.channel().timeoutMs());
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
        ExecutorGroup.leave(job.channel().jobId(), at.group());
      }
    }
    return CollectionConverters.asScala(List.of("rank " + rank + " (" + at.slots() + ", pushed with " + at.group() + ", executor " + executor + ") on "
        + device + " ran " + steps + " steps").iterator());
  }

  private static String[] sameExecutor(int n) {
    String[] all = new String[n];
    java.util.Arrays.fill(all, "");
    return all;
  }

  /** The leader: the only connection to the driver; pushes the sums of the tree nodes inside its group's slots. */
  private int lead(ExecutorGroup group, List<Steps> work, BooleanSupplier cancelled) throws java.io.IOException {
    SumTree.Node range = group.node();
    List<SumTree.Node> pushes = SumTree.cover(work.get(0).slots, range);
    int steps = 0;
    WorkerJob.Channel ch = job.channel();
    int[] sizes = work.stream().mapToInt(w -> w.lora.layout().size()).toArray();
    try (GradientClient c = GradientClient.connect(ch.host(), ch.port(), ch.jobId(), ch.secret(), range, sizes, ch.timeoutMs(),
        Transport.parse(ch.transport()))) {
      Optional<GradientClient.Params> p;
      while ((p = c.next()).isPresent()) {
        GradientClient.Params first = p.get();
        if (first.initialize()) { // DoRA: magnitudes from the base weights this executor holds
          c.pushInit(work.get(first.run()).lora.withBaseValues(first.values()));
          continue;
        }
        List<GradientClient.Params> tick = new java.util.ArrayList<>(List.of(first));
        while (!first.evaluate() && tick.get(tick.size() - 1).more() > 0) { // a tick's adapters, one a run: all of them before computing
          tick.add(c.next().orElseThrow(() -> new java.io.EOFException("the driver ended training inside a tick of " + (first.more() + 1) + " runs")));
        }
        group.publish(Optional.of(tick));
        List<ExecutorGroup.Contribution> own = compute(work, tick);
        java.util.TreeMap<Integer, List<ExecutorGroup.Contribution>> all = new java.util.TreeMap<>(group.gather(cancelled));
        all.put(own.get(0).rank(), own);
        if (first.evaluate()) { // the ranks' validation slots, in slot order; the driver adds them
          java.io.ByteArrayOutputStream slots = new java.io.ByteArrayOutputStream();
          for (List<ExecutorGroup.Contribution> x : all.values()) {
            slots.writeBytes(x.get(0).scores());
          }
          c.pushEval(first.step(), first.run(), first.candidates(), slots.toByteArray());
          continue;
        }
        for (int t = 0; t < tick.size(); t++) { // one push a run, in the tick's order
          push(c, tick.get(t), pushes, all, t);
        }
        steps++;
      }
      group.publish(Optional.empty());
    }
    return steps;
  }

  /** Run {@code t} of a tick: the members' node sums inside the group's pushed nodes, added over the tree, pushed as one. */
  private static void push(GradientClient c, GradientClient.Params p, List<SumTree.Node> pushes, Map<Integer, List<ExecutorGroup.Contribution>> all,
      int t) throws java.io.IOException {
    Map<SumTree.Node, float[]> grads = new HashMap<>();
    Map<SumTree.Node, Double> losses = new HashMap<>();
    long tokens = 0;
    long inputTokens = 0;
    long compute = 0;
    int flags = 0;
    int culprit = -1;
    for (List<ExecutorGroup.Contribution> ranks : all.values()) { // in rank order, so the first culprit is the first slot's
      ExecutorGroup.Contribution x = ranks.get(t);
      grads.putAll(x.gradSums());
      losses.putAll(x.lossSums());
      tokens += x.tokens();
      inputTokens += x.inputTokens();
      compute = Math.max(compute, x.computeNanos());
      flags |= x.flags();
      culprit = culprit < 0 ? x.culprit() : culprit;
    }
    double[] lossSums = new double[pushes.size()];
    List<float[]> sums = new java.util.ArrayList<>();
    for (int j = 0; j < pushes.size(); j++) {
      lossSums[j] = SumTree.sum(pushes.get(j), losses::get);
      sums.add(sumOf(pushes.get(j), grads));
    }
    c.push(p.step(), p.run(), tokens, inputTokens, compute, flags, culprit, lossSums, sums);
  }

  /**
   * Adds the members' node sums inside {@code node} over the tree, in parallel chunks (elementwise,
   * so any chunking gives the same bits), into the buffer of its first input, which holds the sum afterwards.
   */
  private static float[] sumOf(SumTree.Node node, Map<SumTree.Node, float[]> grads) {
    if (grads.containsKey(node)) {
      return grads.get(node);
    }
    float[] first = grads.entrySet().stream().filter(e -> e.getKey().lo() == node.lo()).findFirst() // the inputs are disjoint
        .orElseThrow(() -> new IllegalStateException("no gradient covers " + node)).getValue();
    Kernels.chunks(first.length, (from, to) -> SumTree.sum(node, grads, from, to));
    return first;
  }

  /** A member: computes what the leader hands it, and hands back its result. */
  private int follow(ExecutorGroup group, List<Steps> work, BooleanSupplier cancelled) throws java.io.IOException {
    int steps = 0;
    long seen = 0;
    while (true) {
      ExecutorGroup.Round r = group.next(seen, cancelled);
      seen = r.number();
      if (r.params().isEmpty()) {
        return steps;
      }
      group.contribute(seen, compute(work, r.params().get()));
      steps += r.params().get().get(0).evaluate() ? 0 : 1;
    }
  }

  /**
   * This rank's results for a round, one a broadcast: an evaluation's scores, or each run's node sums
   * for its step of the tick, their slots computed together ({@link TickSteps}).
   */
  private List<ExecutorGroup.Contribution> compute(List<Steps> work, List<GradientClient.Params> round) throws java.io.IOException {
    BarrierTaskContext.get().killTaskIfInterrupted(); // a killed task stops at the next step instead of finishing its loop
    if (round.get(0).evaluate()) {
      return List.of(work.get(round.get(0).run()).evaluate(round.get(0)));
    }
    long t0 = System.nanoTime();
    List<TickSteps.RunSlots> runs = new java.util.ArrayList<>();
    for (GradientClient.Params p : round) {
      runs.add(work.get(p.run()).slots(p));
    }
    TickSteps.run(runs, job.base().mixedRuns());
    long nanos = System.nanoTime() - t0; // the tick's compute, which every run of it shared
    List<ExecutorGroup.Contribution> out = new java.util.ArrayList<>();
    for (int i = 0; i < round.size(); i++) {
      out.add(work.get(round.get(i).run()).contribution(runs.get(i), nanos));
    }
    return out;
  }

  /** One rank's work for one run: its rows of a step, as micro-batch slots, or its validation slots' scores. */
  private final class Steps {
    /** The run's index in the job: the wire's name for it, and the fault plan's. */
    private final int index;
    private final WorkerJob.Run run;
    private final LanguageModel model;
    private final LoraModel lora;
    private final io.lorafleet.datasets.arrow.SplitReader split;
    private final EpochOrder order;
    private final int rank;
    private final SumTree.Node mine;
    private final int slots;
    private final java.util.concurrent.ExecutorService prefetch;

    Steps(int index, WorkerJob.Run run, LanguageModel model, LoraModel lora, io.lorafleet.datasets.arrow.SplitReader split, EpochOrder order, Placement at,
        int slots, java.util.concurrent.ExecutorService prefetch) {
      this.index = index;
      this.run = run;
      this.model = model;
      this.lora = lora;
      this.split = split;
      this.order = order;
      this.rank = at.rank();
      this.mine = at.slots();
      this.slots = slots;
      this.prefetch = prefetch;
    }

    /**
     * The validation rows this rank scores, slot by slot: the first --eval-examples rows of the run's
     * data cut into slots of one micro-batch, shared out as training slots are, so every slot is
     * scored alike whatever the number of workers and the driver adds the slots' scores in slot order.
     */
    private List<List<io.lorafleet.datasets.arrow.Example>> validationSlots() throws java.io.IOException {
      var split = ModelCache.split(run.data().path() + "/validation", run.data().fingerprint(), model.config(), hadoop.value(), run.data().shuffleWindow());
      int m = run.data().microBatch();
      long rows = Math.min(split.rows(), run.data().evalExamples());
      long slots = (rows + m - 1) / m;
      int n = run.data().workers();
      List<List<io.lorafleet.datasets.arrow.Example>> mine = new java.util.ArrayList<>();
      for (long j = GlobalBatch.firstSlot(slots, n, rank); j < GlobalBatch.firstSlot(slots, n, rank + 1); j++) {
        List<io.lorafleet.datasets.arrow.Example> slot = new java.util.ArrayList<>();
        for (long i = j * m; i < Math.min(rows, (j + 1) * m); i++) {
          slot.add(split.row(i));
        }
        mine.add(slot);
      }
      return mine;
    }

    /** Every candidate of an evaluation scored in one mixed-adapter pass a slot, as eval --run scores them. */
    ExecutorGroup.Contribution evaluate(GradientClient.Params p) throws java.io.IOException {
      List<float[]> candidates = new java.util.ArrayList<>();
      for (int k = 0; k < p.candidates(); k++) {
        candidates.add(p.candidate(k));
      }
      List<byte[]> scored = new java.util.ArrayList<>();
      for (var rows : validationSlots()) {
        scored.add(run.data().scorer().score(model, lora, candidates, rows, run.data().microBatch(), run.data().evalGenerates()));
      }
      return ExecutorGroup.Contribution.scored(rank, ValidationScorer.frame(scored));
    }

    /** The run's step {@code p}: its micro-batches, one a slot of this rank, how to compute them, and the sums they go into. */
    TickSteps.RunSlots slots(GradientClient.Params p) {
      int step = p.step();
      FaultPlan faults = job.faults();
      int attempt = job.attempt();
      faults.beforeWorkerStep(step, rank, attempt, index);
      int g = run.data().globalBatch();
      int m = run.data().microBatch();
      var rows = GlobalBatch.slice(split, order, step, g, m, mine);
      if (step + 1 < run.data().steps()) {
        prefetch.execute(() -> {
          try {
            GlobalBatch.slice(split, order, step + 1, g, m, mine);
          } catch (RuntimeException later) {
            // the next step reads these rows again and reports the error there
          }
        });
      }
      // the run's seed alone: each row's masks are keyed by its position in the data order, so no worker or step enters them
      WorkerJob.Base base = job.base();
      boolean drops = run.lora().loraDropout() > 0 || base.modelDropout();
      var dropout = new Dropout.Plan(drops ? (run.data().seed() * 1_000_003L) & Long.MAX_VALUE : -1, base.modelDropout());
      // fp16 compute back-propagates the driver's loss scale (fp32 needs none) and says so
      boolean fp16 = model.dtype() == DataType.FLOAT16;
      double scale = faults.diverges(step, rank, attempt, index) ? Double.NaN : fp16 ? p.lossScale() : 1.0;
      var micro = GlobalBatch.microBatches(rows, m, GlobalBatch.firstPosition(step, g, m, mine.lo())); // one a slot
      // the checkpointed step recomputes a causal decoder's pieces; an encoder's step is the plain one
      boolean recompute = base.gradientCheckpointing() && !model.config().arch().encoder();
      SlotSums sums = new SlotSums(SumTree.cover(slots, mine), lora.layout().size(), fp16,
          new SlotSums.FirstSlotFaults(faults.overflows(step, rank, attempt, index), faults.poisons(step, rank, attempt, index)));
      long inputTokens = 0; // the rows' own tokens: padding is the batch's, not the data's
      for (var e : rows) {
        inputTokens += e.inputIds().length;
      }
      return new TickSteps.RunSlots(lora, p.values(), micro, dropout, scale, recompute, sums, inputTokens);
    }

    /** The rank's contribution for the run once its slots are computed: the sums of the tree nodes inside its slots. */
    ExecutorGroup.Contribution contribution(TickSteps.RunSlots r, long nanos) {
      Map<SumTree.Node, float[]> grads = new HashMap<>();
      Map<SumTree.Node, Double> losses = new HashMap<>();
      for (SumTree.Node node : SumTree.cover(slots, mine)) {
        SlotSums.Partial x = r.sums().of(node);
        grads.put(node, x.grad());
        losses.put(node, x.loss());
      }
      return new ExecutorGroup.Contribution(rank, grads, losses, r.sums().tokens, r.inputTokens(), nanos, r.sums().flags, r.sums().culprit, new byte[0]);
    }
  }
}
