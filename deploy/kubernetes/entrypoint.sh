#!/usr/bin/env bash
# Entrypoint of the lorafleet image. Spark's Kubernetes scheduler starts the driver pod with
# "driver <spark-submit arguments>" and executor pods with "executor", passing the SPARK_* variables
# used below; anything else is run as a command.
set -euo pipefail
cp="/opt/lorafleet/lorafleet.jar:/opt/spark/jars/*"
opens=(-XX:+IgnoreUnrecognizedVMOptions --add-modules=jdk.incubator.vector
  --add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.lang.invoke=ALL-UNNAMED
  --add-opens=java.base/java.lang.reflect=ALL-UNNAMED --add-opens=java.base/java.io=ALL-UNNAMED
  --add-opens=java.base/java.net=ALL-UNNAMED --add-opens=java.base/java.nio=ALL-UNNAMED
  --add-opens=java.base/java.util=ALL-UNNAMED --add-opens=java.base/java.util.concurrent=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED --add-opens=java.base/jdk.internal.ref=ALL-UNNAMED
  --add-opens=java.base/sun.nio.ch=ALL-UNNAMED --add-opens=java.base/sun.nio.cs=ALL-UNNAMED
  --add-opens=java.base/sun.security.action=ALL-UNNAMED --add-opens=java.base/sun.util.calendar=ALL-UNNAMED
  -Djdk.reflect.useDirectMethodHandle=false -Dio.netty.tryReflectionSetAccessible=true
  -Dai.djl.offline=true -Xss4m)

# spark.executor.extraJavaOptions reach executor pods as SPARK_JAVA_OPT_0, SPARK_JAVA_OPT_1, ...
extra=()
while IFS='=' read -r name value; do
  [[ "$name" == SPARK_JAVA_OPT_* ]] && extra+=("$value")
done < <(env | sort)

case "${1:-}" in
  driver)
    shift
    exec java "${opens[@]}" -cp "$cp" org.apache.spark.deploy.SparkSubmit \
      --deploy-mode client --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS}" "$@"
    ;;
  executor)
    shift
    exec java "${opens[@]}" ${extra[@]+"${extra[@]}"} -Xms"${SPARK_EXECUTOR_MEMORY}" -Xmx"${SPARK_EXECUTOR_MEMORY}" -cp "$cp" \
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
      --driver-url "${SPARK_DRIVER_URL}" --executor-id "${SPARK_EXECUTOR_ID}" --cores "${SPARK_EXECUTOR_CORES}" \
      --app-id "${SPARK_APPLICATION_ID}" --hostname "${SPARK_EXECUTOR_POD_IP}" \
      --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID}" --podName "${SPARK_EXECUTOR_POD_NAME}"
    ;;
  *)
    exec "$@"
    ;;
esac
