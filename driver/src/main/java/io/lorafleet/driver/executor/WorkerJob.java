package io.lorafleet.driver.executor;

import io.lorafleet.worker.lora.LoraConfig;
import io.lorafleet.worker.quant.Quantization;
import java.io.Serializable;

/**
 * What a barrier task needs of a training job, and nothing else: the driver ships this to every
 * task instead of its whole configuration.
 *
 * @param base the frozen base each executor loads once, shared by every run
 * @param runs the adapters trained on it, each on its own data (one for a plain {@code train}); the
 *     wire names a run by its index here
 * @param channel where and how the workers reach the driver's gradient channel
 * @param faults injected faults (tests), or none
 * @param attempt which barrier stage of the job this is (1-based; fault plans name it)
 */
public record WorkerJob(Base base, java.util.List<Run> runs, Channel channel, FaultPlan faults, int attempt) implements Serializable {
  public WorkerJob {
    runs = java.util.List.copyOf(runs);
    if (runs.isEmpty()) {
      throw new IllegalArgumentException("a worker job trains at least one run");
    }
    Data first = runs.get(0).data();
    for (Run r : runs) { // a step has as many slots for every run (a run's micro-batch may be larger): the peers speak for them
      if (r.data().workers() != first.workers() || r.data().slots() != first.slots()) {
        throw new IllegalArgumentException("every run of a job shares the workers and the slots of a step but found " + r.data().workers() + " and "
            + r.data().slots() + " against " + first.workers() + " and " + first.slots());
      }
    }
  }

  /**
   * One adapter the workers compute gradients for.
   *
   * @param lora the adapter (its dropout included)
   * @param data the run's prepared dataset and how a worker reads its share of each global batch
   */
  public record Run(LoraConfig lora, Data data) implements Serializable {}

  /** What every run shares: the workers and a step's number of slots (each run's global batch and micro-batch are its own). */
  public Data shape() {
    return runs.get(0).data();
  }

  /**
   * @param model an HF model directory or Hadoop URI
   * @param quantize the quantization applied at load
   * @param gradientCheckpointing recompute a causal decoder's activations in the backward pass
   * @param modelDropout the base model's own dropouts in training (transformers' train mode)
   * @param intraOpThreads PyTorch's intra-op threads on every worker (the same everywhere, so no slot's gradient depends on its executor)
   * @param mixedRuns the most runs whose micro-batches share a pass (0: all)
   */
  public record Base(String model, Quantization quantize, boolean gradientCheckpointing, io.lorafleet.worker.model.Labels labels, boolean modelDropout,
      int intraOpThreads, int mixedRuns) implements Serializable {
    public Base {
      if (intraOpThreads < 1) {
        throw new IllegalArgumentException("a worker's intra-op threads must be >= 1 but found " + intraOpThreads);
      }
    }
  }

  /**
   * @param path the directory lorafleet prepare wrote
   * @param fingerprint the dataset's fingerprint, which keys the executors' split cache
   * @param evalExamples validation examples shared out over the workers for --eval-every
   * @param evalGenerates whether those evaluations generate (greedy) to count exact matches: a causal LM chosen by exact_match
   * @param scorer how those evaluations score their candidates (the eval package's)
   */
  public record Data(String path, String fingerprint, int workers, int steps, int globalBatch, int microBatch, int shuffleWindow, long seed,
      int evalExamples, boolean evalGenerates, ValidationScorer scorer) implements Serializable {
    /** A step's micro-batch slots. */
    public int slots() {
      return GlobalBatch.slots(globalBatch, microBatch);
    }
  }

  /**
   * @param secret the job's shared secret, which authenticates every message
   * @param transport fp32, bf16 or fp16
   * @param preReduce whether the workers of one executor add their gradients before one push
   * @param timeoutMs how long a worker waits for the driver or its group
   */
  public record Channel(String host, int port, String jobId, byte[] secret, String transport, boolean preReduce, int timeoutMs)
      implements Serializable {
    public Channel {
      secret = secret.clone();
    }
  }
}
