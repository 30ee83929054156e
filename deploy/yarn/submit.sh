#!/usr/bin/env bash
# Submits a lorafleet training job to YARN in cluster mode with the cluster's own Spark 4.1
# distribution (spark-submit on PATH or $SPARK_HOME/bin).
#
#   deploy/yarn/submit.sh --model-archive hdfs:///models/base.tgz --data-archive hdfs:///data/prepared.tgz \
#                         [--job deploy/yarn/job.yaml] [--queue default] [-- extra train flags]
#
# YARN localises the archives into every container as ./base and ./prepared (the job file's model
# and data), and the job file and the GPU discovery script next to them. The driver publishes
# checkpoints and the adapter to the job file's hdfs:// output. YARN's own GPU isolation must be on
# (yarn.io/gpu resource type, resource-types.xml); Spark maps spark.executor.resource.gpu to it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
model="" data="" job="$here/job.yaml" queue="default" extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --model-archive) model="$2"; shift 2 ;;
    --data-archive) data="$2"; shift 2 ;;
    --job) job="$2"; shift 2 ;;
    --queue) queue="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "submit: unknown option '$1'" >&2; exit 2 ;;
  esac
done
[[ -n "$model" && -n "$data" ]] || { echo "submit: --model-archive and --data-archive are required" >&2; exit 2; }
submit="${SPARK_HOME:+$SPARK_HOME/bin/}spark-submit"
jar="$(ls "$root"/deploy/target/lorafleet-*.jar | head -1)"
opts="-Dai.djl.offline=true -Xss4m"
exec "$submit" --master yarn --deploy-mode cluster --queue "$queue" --name lorafleet \
  --class io.lorafleet.driver.cli.Main \
  --archives "$model#base,$data#prepared" \
  --files "$job#job.yaml,$root/deploy/gpu/discover-gpus.sh#discover-gpus.sh" \
  --conf spark.yarn.maxAppAttempts=1 \
  --conf spark.driver.extraJavaOptions="$opts" \
  --conf spark.executor.extraJavaOptions="$opts" \
  "$jar" train --config job.yaml ${extra[@]+"${extra[@]}"}
