#!/usr/bin/env bash
# Builds the lorafleet Kubernetes image.
#   deploy/kubernetes/build-image.sh [--tag lorafleet:0.1.0] [--context-only] [MAVEN ARGS...]
# Runs Maven with -Pkubernetes (adds spark-kubernetes to Spark's classpath), lays out the Docker
# build context in deploy/target/k8s-image/, then runs docker build unless --context-only.
# Extra arguments go to Maven, e.g. -Dpytorch.native.flavor=cu124 for a CUDA build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tag="lorafleet:0.1.0" context_only=false mvn_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tag) tag="$2"; shift 2 ;;
    --context-only) context_only=true; shift ;;
    *) mvn_args+=("$1"); shift ;;
  esac
done
(cd "$root" && mvn -B -q -Pkubernetes -DskipTests install ${mvn_args[@]+"${mvn_args[@]}"})
ctx="$root/deploy/target/k8s-image"
rm -rf "$ctx"
mkdir -p "$ctx/spark-jars"
tr ':' '\n' < "$root/deploy/target/spark.classpath" | while read -r j || [[ -n "$j" ]]; do [[ -n "$j" ]] && cp "$j" "$ctx/spark-jars/"; done
cp "$root"/deploy/target/lorafleet-*.jar "$ctx/lorafleet.jar"
cp "$here/Dockerfile" "$here/entrypoint.sh" "$ctx/"
cp "$root/deploy/gpu/discover-gpus.sh" "$ctx/"
chmod +x "$ctx/entrypoint.sh" "$ctx/discover-gpus.sh"
echo "build context: $ctx"
$context_only && exit 0
docker build -t "$tag" "$ctx"
