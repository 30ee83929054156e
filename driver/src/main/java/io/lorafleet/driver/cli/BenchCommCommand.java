package io.lorafleet.driver.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.lorafleet.driver.bench.CommBenchmark;
import io.lorafleet.driver.allreduce.Transport;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "bench-comm", mixinStandardHelpOptions = true,
    description = "Benchmark the driver's gradient path: the real gradient server and optimizer against N simulated workers on 127.0.0.1 "
        + "pushing P values a step (time split into broadcast, receive, reduce, digest and optimizer; bytes; driver CPU), plus the driver's "
        + "reduce+clip+AdamW for one gradient against this machine's memory bandwidth.")
final class BenchCommCommand implements Callable<Integer> {
  @Option(names = "--workers", description = "simulated worker counts to run", defaultValue = "1,2,4,8,16,32", split = ",") List<Integer> workers;
  @Option(names = "--params", description = "adapter sizes (values per push) to run", defaultValue = "1000000,10000000,42000000", split = ",") List<Integer> params;
  @Option(names = "--grad-transport", defaultValue = "fp32", split = ",", description = "one or more of fp32, bf16, fp16") List<String> transports;
  @Option(names = "--steps", defaultValue = "3", description = "measured steps per configuration, after one warm-up") int steps;

  @Override
  public Integer call() throws Exception {
    ObjectMapper json = new ObjectMapper();
    System.out.println(json.writeValueAsString(java.util.Map.of("memory_bandwidth_gb_s", CommBenchmark.memoryBandwidth(),
        "cores", Runtime.getRuntime().availableProcessors())));
    for (int p : params) {
      System.out.println(json.writeValueAsString(CommBenchmark.driverMath(p, 5)));
    }
    for (String t : transports) {
      for (int p : params) {
        for (int n : workers) {
          System.out.println(json.writeValueAsString(CommBenchmark.run(n, p, Transport.parse(t), steps)));
        }
      }
    }
    return 0;
  }
}
