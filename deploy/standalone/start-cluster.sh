#!/usr/bin/env bash
# Starts a real Spark standalone cluster on this machine: one master and N workers, each its own
# JVM, bound to 127.0.0.1, running from Spark's Maven jars (no Spark distribution needed).
#
#   deploy/standalone/start-cluster.sh [--workers N] [--cores C] [--memory 2g] [--port P] [--state DIR]
#                                      [--gpus G [--gpu-discovery SCRIPT]] [--add]
#
# --add starts N more workers for the cluster already running in DIR (a node that comes back, say).
#
# --gpus G gives every worker G GPUs, found by SCRIPT (default deploy/gpu/discover-gpus.sh).
#
# Prints the master URL. Everything it starts is recorded in DIR/pids (process groups), so
# stop-cluster.sh ends the daemons and their executors. DIR defaults to ./lorafleet-standalone.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
workers=2 cores=1 memory=2g port=7077 state="$PWD/lorafleet-standalone" gpus=0 gpu_script="$root/deploy/gpu/discover-gpus.sh" add=false
while [[ $# -gt 0 ]]; do
  case "$1" in
    --workers) workers="$2"; shift 2 ;;
    --cores) cores="$2"; shift 2 ;;
    --memory) memory="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --state) state="$2"; shift 2 ;;
    --gpus) gpus="$2"; shift 2 ;;
    --gpu-discovery) gpu_script="$2"; shift 2 ;;
    --add) add=true; shift ;;
    *) echo "start-cluster: unknown option '$1' (see the header of $0)" >&2; exit 2 ;;
  esac
done
cp_file="$root/deploy/target/spark.classpath"
[[ -f "$cp_file" ]] || { echo "start-cluster: $cp_file is missing; run 'mvn -B -DskipTests install' first" >&2; exit 1; }
if $add; then
  [[ -f "$state/master-url" ]] || { echo "start-cluster --add: no cluster is running in $state" >&2; exit 1; }
elif [[ -f "$state/pids" ]]; then
  echo "start-cluster: $state/pids exists; run stop-cluster.sh --state $state first" >&2
  exit 1
fi

# SPARK_HOME: jars/ links to Spark's runtime classpath; workers need it to launch executors.
mkdir -p "$state/spark-home/jars" "$state/spark-home/conf" "$state/logs"
if ! $add; then
  rm -f "$state/spark-home/jars/"*
  tr ":" "\n" < "$cp_file" | while read -r j || [[ -n "$j" ]]; do [[ -n "$j" ]] && ln -sf "$j" "$state/spark-home/jars/"; done
fi
export SPARK_HOME="$state/spark-home" SPARK_SCALA_VERSION=2.13 SPARK_LOCAL_IP=127.0.0.1 SPARK_NO_DAEMONIZE=1

opens="-XX:+IgnoreUnrecognizedVMOptions --add-modules=jdk.incubator.vector --add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.lang.invoke=ALL-UNNAMED --add-opens=java.base/java.lang.reflect=ALL-UNNAMED --add-opens=java.base/java.io=ALL-UNNAMED --add-opens=java.base/java.net=ALL-UNNAMED --add-opens=java.base/java.nio=ALL-UNNAMED --add-opens=java.base/java.util=ALL-UNNAMED --add-opens=java.base/java.util.concurrent=ALL-UNNAMED --add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED --add-opens=java.base/jdk.internal.ref=ALL-UNNAMED --add-opens=java.base/sun.nio.ch=ALL-UNNAMED --add-opens=java.base/sun.nio.cs=ALL-UNNAMED --add-opens=java.base/sun.security.action=ALL-UNNAMED --add-opens=java.base/sun.util.calendar=ALL-UNNAMED -Djdk.reflect.useDirectMethodHandle=false -Dio.netty.tryReflectionSetAccessible=true"

worker_resources=()
if [[ "$gpus" -gt 0 ]]; then
  worker_resources=(-Dspark.worker.resource.gpu.amount="$gpus" -Dspark.worker.resource.gpu.discoveryScript="$gpu_script")
fi

launch() { # name, main class, args...
  local name="$1"; shift
  # setsid: a process group of its own, so stopping it also stops the executors it forked
  setsid java $opens -Xmx512m -cp "$SPARK_HOME/jars/*" "$@" > "$state/logs/$name.log" 2>&1 < /dev/null &
  echo "$! $name" >> "$state/pids"
}

first=1
if $add; then
  port="$(sed 's#.*:##' "$state/master-url")"
  first=$(( $(grep -c " worker-" "$state/pids") + 1 ))
else
  launch master org.apache.spark.deploy.master.Master --host 127.0.0.1 --port "$port" --webui-port 0
  for _ in $(seq 1 60); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.5
  done
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "start-cluster: master did not open port $port; see $state/logs/master.log" >&2; "$here/stop-cluster.sh" --state "$state"; exit 1; }
fi

last=$(( first + workers - 1 ))
for i in $(seq "$first" "$last"); do
  mkdir -p "$state/work-$i"
  launch "worker-$i" ${worker_resources[@]+"${worker_resources[@]}"} org.apache.spark.deploy.worker.Worker "spark://127.0.0.1:$port" --host 127.0.0.1 --cores "$cores" --memory "$memory" \
    --webui-port 0 --work-dir "$state/work-$i"
done
for i in $(seq "$first" "$last"); do
  for _ in $(seq 1 120); do
    grep -q "Successfully registered with master" "$state/logs/worker-$i.log" 2>/dev/null && break
    sleep 0.5
  done
  grep -q "Successfully registered with master" "$state/logs/worker-$i.log" || {
    echo "start-cluster: worker-$i did not register; see $state/logs/worker-$i.log" >&2; "$here/stop-cluster.sh" --state "$state"; exit 1; }
done
echo "spark://127.0.0.1:$port" > "$state/master-url"
echo "spark://127.0.0.1:$port"
