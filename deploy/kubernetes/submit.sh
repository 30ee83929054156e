#!/usr/bin/env bash
# Submits a lorafleet job to Kubernetes in cluster mode.
#   deploy/kubernetes/submit.sh --api https://K8S-API:6443 --image REGISTRY/lorafleet:0.1.0 [--namespace NS] [-- COMMAND ARGS]
# Default command: train --config /etc/lorafleet/job.yaml (the job file comes from the
# lorafleet-job ConfigMap, see README.md here). Needs a launcher built with -Pkubernetes.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
api="" image="" namespace="default" cmd=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --api) api="$2"; shift 2 ;;
    --image) image="$2"; shift 2 ;;
    --namespace) namespace="$2"; shift 2 ;;
    --) shift; cmd=("$@"); break ;;
    *) echo "submit: unknown option '$1'" >&2; exit 2 ;;
  esac
done
[[ -n "$api" && -n "$image" ]] || { echo "submit: --api and --image are required" >&2; exit 2; }
[[ ${#cmd[@]} -gt 0 ]] || cmd=(train --config /etc/lorafleet/job.yaml)
export LORAFLEET_APP_JAR="local:///opt/lorafleet/lorafleet.jar"
exec "$here/../bin/lorafleet" submit \
  --master "k8s://$api" --deploy-mode cluster --name lorafleet \
  --conf spark.kubernetes.namespace="$namespace" \
  --conf spark.kubernetes.container.image="$image" \
  --conf spark.kubernetes.authenticate.driver.serviceAccountName=lorafleet \
  --conf spark.driver.cores=2 \
  --conf spark.driver.memory=7g \
  --conf spark.kubernetes.driver.podTemplateFile="$here/driver-pod-template.yaml" \
  --conf spark.kubernetes.executor.podTemplateFile="$here/executor-pod-template.yaml" \
  --conf spark.executor.resource.gpu.vendor=nvidia.com \
  --conf spark.executor.resource.gpu.discoveryScript=/opt/lorafleet/discover-gpus.sh \
  -- "${cmd[@]}"
