#!/usr/bin/env bash
# Submits a lorafleet command to the cluster that start-cluster.sh started.
#   deploy/standalone/submit.sh [--state DIR] [spark-submit options] -- COMMAND [ARGS]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state="$PWD/lorafleet-standalone"
if [[ "${1:-}" == "--state" ]]; then state="$2"; shift 2; fi
[[ -f "$state/master-url" ]] || { echo "submit: no cluster recorded in $state (run start-cluster.sh)" >&2; exit 1; }
export SPARK_LOCAL_IP=127.0.0.1
exec "$here/../bin/lorafleet" submit --master "$(cat "$state/master-url")" "$@"
