package io.lorafleet.driver.cli;

import io.lorafleet.driver.average.AdapterAverager;
import io.lorafleet.datasets.fs.HadoopConf;
import io.lorafleet.datasets.fs.NodeCopy;
import io.lorafleet.driver.checkpoint.RunFiles;
import io.lorafleet.driver.checkpoint.RunOutput;
import io.lorafleet.driver.executor.ModelCache;
import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.model.ModelSkeleton;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "average", mixinStandardHelpOptions = true,
    description = "Average checkpoints (or combine adapters of different tasks) into one PEFT adapter: factor, cat (exact) or svd (exact, truncated).")
final class AverageCommand implements Callable<Integer> {
  @Option(names = "--model", description = "base model directory (its structure: no weights are loaded)", required = true) String model;
  @Option(names = "--adapters", split = ",", description = "explicit adapter directories") List<String> adapters = new ArrayList<>();
  @Option(names = "--run", description = "a train output directory whose checkpoints to average") String run;
  @Option(names = "--last", defaultValue = "0", description = "with --run: the last K checkpoints") int last;
  @Option(names = "--steps", description = "with --run: a step range A-B (inclusive)") String steps;
  @Option(names = "--weights", split = ",", description = "one weight per adapter") List<Double> weights = new ArrayList<>();
  @Option(names = "--ema", description = "EMA decay in (0,1): weights decay^(n-1-i), newest heaviest") Double ema;
  @Option(names = "--combine", description = "use the weights as given (a task combination), not normalised to sum 1") boolean combine;
  @Option(names = "--mode", defaultValue = "cat", description = "factor, cat or svd (averaging and exact sums); ties, dare_linear, dare_ties or "
      + "magnitude_prune (PEFT's add_weighted_adapter, factor-wise, equal ranks); or their _svd forms (on each adapter's dense update, "
      + "refactored to --rank)") String mode;
  @Option(names = "--rank", defaultValue = "0", description = "svd and the _svd modes: target rank (default: the first adapter's r)") int rank;
  @Option(names = "--density", defaultValue = "NaN", description = "ties, dare and magnitude_prune: the fraction of entries kept, in [0, 1]")
  double density;
  @Option(names = "--majority-sign-method", defaultValue = "total", description = "ties and dare_ties: elect each entry's sign by the sum (total) "
      + "or by the count (frequency)") String majoritySignMethod;
  @Option(names = "--seed", defaultValue = "0", description = "dare: the seed of the random drop") long seed;
  @Option(names = "--out", description = "the averaged or combined adapter directory to write", required = true) String out;
  @Option(names = "--overwrite", description = "replace what --out holds (otherwise an output that holds files is refused)") boolean overwrite;

  private List<String> inputs() {
    List<String> in = new ArrayList<>(adapters);
    in.add(model);
    if (run != null) {
      in.add(run);
    }
    return in;
  }

  @Override
  public Integer call() throws Exception {
    RunOutput ro = Outputs.claim(out, overwrite, inputs());
    List<String> dirs = new ArrayList<>(adapters);
    if (run != null) {
      List<String> all = RunFiles.checkpoints(run, HadoopConf.current());
      if (steps != null) {
        String[] ab = steps.split("-");
        if (ab.length != 2) {
          throw new IllegalArgumentException("--steps must look like A-B but found '" + steps + "'");
        }
        int a = Integer.parseInt(ab[0].trim());
        int b = Integer.parseInt(ab[1].trim());
        all = all.stream().filter(p -> {
          int s = RunFiles.stepOf(p);
          return s >= a && s <= b;
        }).toList();
      } else if (last > 0) {
        all = all.subList(Math.max(0, all.size() - last), all.size());
      }
      dirs.addAll(all);
    }
    if (dirs.isEmpty()) {
      throw new IllegalArgumentException("no adapters selected: give --adapters, or --run with --last or --steps");
    }
    double[] w = new double[dirs.size()];
    if (ema != null) {
      w = AdapterAverager.emaWeights(dirs.size(), ema);
    } else if (!weights.isEmpty()) {
      if (weights.size() != dirs.size()) {
        throw new IllegalArgumentException("--weights has " + weights.size() + " values for " + dirs.size() + " adapters");
      }
      w = weights.stream().mapToDouble(Double::doubleValue).toArray();
    } else {
      java.util.Arrays.fill(w, 1.0);
    }
    List<java.nio.file.Path> local = dirs.stream().map(d -> NodeCopy.of(d, NodeCopy.Kind.ADAPTER)).toList();
    // the base's structure, not its weights, with the labels the (first) adapter's head was trained for
    ModelSkeleton base = ModelCache.skeleton(model, HadoopConf.current(), AdapterFormat.labels(local.get(0)));
    List<AdapterAverager.Source> src = new ArrayList<>();
    for (int i = 0; i < dirs.size(); i++) {
      src.add(new AdapterAverager.Source(dirs.get(i), AdapterFormat.read(local.get(i), base)));
    }
    var r = AdapterAverager.combine(base, src, w, !combine, mode, rank, new AdapterAverager.Merge(density, majoritySignMethod, seed));
    AdapterFormat.write(ro.local(), r.model(), r.values(), r.metadata());
    ro.publishAll();
    System.out.printf("combined %d adapters (%s) into %s%s%n", dirs.size(), mode, out,
        mode.endsWith("svd") ? String.format(", rank %d, relative error %.4g", r.model().config().r(), r.relativeError()) : "");
    return 0;
  }
}
