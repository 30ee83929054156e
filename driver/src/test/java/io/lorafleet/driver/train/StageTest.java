package io.lorafleet.driver.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.lorafleet.worker.flat.FlatLayout;
import org.apache.spark.SparkConf;
import org.junit.jupiter.api.Test;

class StageTest {
  @Test
  void theGradientChannelListensOnTheDriversAddressNeverOnAllInterfaces() {
    // workers connect to spark.driver.host; the listener binds spark.driver.bindAddress when set (as Spark's own endpoints do)
    assertArrayEquals(new String[] {"10.1.2.3", "10.1.2.3"}, Stage.addresses(new SparkConf(false).set("spark.driver.host", "10.1.2.3")));
    assertArrayEquals(new String[] {"192.168.0.5", "driver.svc"},
        Stage.addresses(new SparkConf(false).set("spark.driver.host", "driver.svc").set("spark.driver.bindAddress", "192.168.0.5")));
  }

  @Test
  void aFlatIndexIsNamedByItsTensor() {
    FlatLayout l = FlatLayout.builder().add("a.lora_A.weight", 2, 3).add("a.lora_B.weight", 4, 2).build();
    assertEquals("a.lora_A.weight", Stage.tensorAt(l, 5));
    assertEquals("a.lora_B.weight", Stage.tensorAt(l, 6));
  }

  @Test
  void aFailedStageIsExplainedByTheTasksOwnLineWhetherExceptionOrError() {
    String spark = "Job aborted due to stage failure: Could not recover from a failed barrier ResultStage.\n"
        + "org.apache.spark.SparkException: Stage failed because barrier task ResultTask(0, 1) finished unsuccessfully.\n";
    assertEquals(": injected fault: rank 0 fails at step 4",
        Stage.reason(spark + "java.lang.IllegalStateException: injected fault: rank 0 fails at step 4\n\tat io.lorafleet.X.y(X.java:1)"));
    assertEquals(": 'void ai.djl.pytorch.jni.PyTorchLibrary.torchSetNumThreads(int)'",
        Stage.reason(spark + "java.lang.UnsatisfiedLinkError: 'void ai.djl.pytorch.jni.PyTorchLibrary.torchSetNumThreads(int)'\n"));
    assertEquals(": Job aborted due to stage failure: Could not recover from a failed barrier ResultStage.", Stage.reason(spark));
  }
}
