package io.lorafleet.driver.train;

import io.lorafleet.driver.average.RunningAverages;
import io.lorafleet.driver.checkpoint.Checkpoints;
import io.lorafleet.driver.optim.AdamW;
import io.lorafleet.driver.optim.LossScaler;
import io.lorafleet.driver.optim.RankAllocator;
import io.lorafleet.worker.lora.LoraModel;
import java.util.Optional;

/**
 * What a run carries from one barrier stage to the next: the fp32 master adapter, the optimizer,
 * the loss scaler, AdaLoRA's allocator and the running averages, all as of the last step, a
 * checkpoint or the init.
 */
final class TrainingState {
  final float[] params;
  final AdamW opt;
  LossScaler scaler;
  Optional<RankAllocator> ranks;
  final RunningAverages averages;
  final BestModel best;

  TrainingState(TrainConfig cfg, LoraModel lora, float[] init) {
    params = init;
    opt = cfg.optimization().newOptimizer(lora.layout());
    scaler = new LossScaler(cfg.compute().initialLossScale(), 0, LossScaler.GROWTH_INTERVAL);
    ranks = RankAllocator.of(lora);
    averages = cfg.averaging().newRunning();
    best = new BestModel(cfg.eval().best());
  }

  /** What a checkpoint saves beside AdamW's moments: AdaLoRA's importance and the running averages. */
  java.util.Map<String, float[]> checkpointTensors() {
    java.util.Map<String, float[]> out = new java.util.TreeMap<>(ranks.map(RankAllocator::checkpointTensors).orElse(java.util.Map.of()));
    out.putAll(averages.tensors());
    return out;
  }

  /** Back to checkpoint {@code st}. */
  void restore(Checkpoints.State st) {
    System.arraycopy(st.params(), 0, params, 0, params.length);
    opt.restore(st.m(), st.v(), st.optimizerSteps());
    scaler = new LossScaler(st.lossScale(), st.lossScaleCleanSteps(), LossScaler.GROWTH_INTERVAL);
    ranks.ifPresent(r -> r.restore(st.extra(), st.trainerState()));
    averages.restore(st.extra());
    best.restore(st.trainerState());
  }

  /** Back to step 0. */
  void reset(TrainConfig cfg, LoraModel lora, float[] init) {
    System.arraycopy(init, 0, params, 0, params.length);
    opt.restore(new float[params.length], new float[params.length], 0);
    scaler = new LossScaler(cfg.compute().initialLossScale(), 0, LossScaler.GROWTH_INTERVAL);
    ranks = ranks.map(r -> new RankAllocator(lora));
    averages.reset();
    best.restore(com.fasterxml.jackson.databind.node.MissingNode.getInstance());
  }
}
