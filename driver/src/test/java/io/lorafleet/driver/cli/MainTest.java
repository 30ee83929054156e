package io.lorafleet.driver.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.util.concurrent.ExecutionException;
import org.apache.spark.SparkException;
import org.junit.jupiter.api.Test;

/** The one line a failed command prints. */
class MainTest {
  @Test
  void aTaskFailureIsTheTasksOwnFirstLineNotSparksWrapper() {
    // local mode: Spark's job failure carries the task's exception as its cause
    var local = new SparkException("Job aborted due to stage failure: Task 1 in stage 0.0 failed 1 times, most recent failure: ...\n\nDriver "
        + "stacktrace:\n\tat org.apache.spark...", new IllegalArgumentException("/d/train/x.arrow, row 3: input_ids[1] is 999\nmore"));
    assertEquals("/d/train/x.arrow, row 3: input_ids[1] is 999", Main.message(local));
    // a cluster: only its text, with the task's exception line in it
    var cluster = new SparkException("Job aborted due to stage failure: Task 1 in stage 0.0 failed 4 times, most recent failure: Lost task 1.3 "
        + "in stage 0.0 (TID 7) (10.0.0.2 executor 1): io.lorafleet.worker.safetensors.SafetensorsException: /a/adapter_model.safetensors: "
        + "tensor 'k': shape [1,2] has more elements than 2^63\n\tat io.lorafleet.worker.safetensors.SafetensorsReader.parseEntry(...)\n\n"
        + "Driver stacktrace:");
    assertEquals("/a/adapter_model.safetensors: tensor 'k': shape [1,2] has more elements than 2^63", Main.message(cluster));
    // lorafleet's own wrappers keep their words; carriers are seen through
    var ours = new ExecutionException(new IOException("training diverged: step 4 gave a non-finite gradient again", new IllegalStateException("x")));
    assertEquals("training diverged: step 4 gave a non-finite gradient again", Main.message(ours));
  }
}
