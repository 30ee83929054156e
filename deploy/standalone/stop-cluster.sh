#!/usr/bin/env bash
# Stops what start-cluster.sh started (master, workers and their executors), by process group.
#   deploy/standalone/stop-cluster.sh [--state DIR]
set -uo pipefail
state="$PWD/lorafleet-standalone"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --state) state="$2"; shift 2 ;;
    *) echo "stop-cluster: unknown option '$1'" >&2; exit 2 ;;
  esac
done
[[ -f "$state/pids" ]] || { echo "stop-cluster: nothing recorded in $state/pids"; exit 0; }
while read -r pid name; do
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
done < "$state/pids"
for _ in $(seq 1 20); do
  alive=false
  while read -r pid name; do kill -0 "$pid" 2>/dev/null && alive=true; done < "$state/pids"
  $alive || break
  sleep 0.5
done
while read -r pid name; do
  kill -KILL -- "-$pid" 2>/dev/null || true
done < "$state/pids"
rm -f "$state/pids" "$state/master-url"
echo "stopped the cluster in $state"
