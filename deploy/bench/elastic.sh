#!/usr/bin/env bash
# The time one lost executor costs, waiting for a replacement against --min-workers, measured on a
# standalone cluster of three 1-core workers (deploy/standalone) with the demo's task: 150 steps of
# a global batch of 24 rows in 3 slots, a checkpoint every 10. Runs:
#   none            nothing lost;
#   exec-wait       the executor of rank 2 SIGKILLs itself before step 25 (kill@24); the master starts a
#                   replacement at once on the same worker, and the run waits for it (--min-workers 3,
#                   the default);
#   exec-shrink     the same loss with --min-workers 2: the run goes on from checkpoint 20 on 2 workers
#                   at once and grows back to 3 at the first checkpoint after the replacement registers;
#   node-wait       after step 24 (a pause@23 fault) the whole node goes (worker daemon and executor,
#                   SIGKILLed), so no replacement can start until a new node joins DELAY seconds later
#                   (default 60, as a new GPU node or pod takes at least); the run waits for it;
#   node-shrink     the same with --min-workers 2.
# Prints each run's wall time, its steps on fewer workers and the steps where it resized, and checks
# that every adapter is the uninterrupted run's, byte for byte.
#   deploy/bench/elastic.sh [OUT] [DELAY]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=$(realpath -m "${1:-lorafleet-bench-elastic}")
DELAY=${2:-60}
[ -d lorafleet-demo/data ] || deploy/bin/lorafleet demo >/dev/null
rm -rf "$OUT" && mkdir -p "$OUT"
common=(--model "$PWD/lorafleet-demo/base-model" --data "$PWD/lorafleet-demo/data" --workers 3 --steps 150 --global-batch 24 --micro-batch 8
  --checkpoint-every 10 --r 16 --lora-alpha 32 --target-modules q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,lm_head --lr 3e-3
  --executor-wait-ms 600000)
cluster() { # a fresh cluster of three 1-core workers for each run
  [ -f "$OUT/cluster/pids" ] && deploy/standalone/stop-cluster.sh --state "$OUT/cluster" >/dev/null
  local port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  deploy/standalone/start-cluster.sh --workers 3 --cores 1 --memory 2g --port "$port" --state "$OUT/cluster" >/dev/null
}
trap '[ -f "$OUT/cluster/pids" ] && deploy/standalone/stop-cluster.sh --state "$OUT/cluster" >/dev/null' EXIT
report() { # name, seconds
  printf "%-12s %6.1f s  steps on fewer than 3 workers: %3s  resized at steps: %s\n" "$1" "$2" \
    "$(grep -c '"workers":[12],' "$OUT/$1/metrics.jsonl" || true)" \
    "$(grep '"resized_from"' "$OUT/$1/metrics.jsonl" | grep -o '"step":[0-9]*' | cut -d: -f2 | tr '\n' ' ')"
}
run() { # name, extra train flags...
  local name="$1"; shift
  cluster
  local t0=$(date +%s.%N)
  deploy/standalone/submit.sh --state "$OUT/cluster" --conf spark.executor.memory=1500m -- train "${common[@]}" --out "$OUT/$name" "$@" \
    >"$OUT/$name.log" 2>&1
  report "$name" "$(echo "$(date +%s.%N) - $t0" | bc)"
}
node_loss() { # name, extra train flags...: a node lost after step 24, a new one DELAY seconds later
  local name="$1"; shift
  cluster
  local t0=$(date +%s.%N)
  (deploy/standalone/submit.sh --state "$OUT/cluster" --conf spark.executor.memory=1500m -- train "${common[@]}" --out "$OUT/$name" \
    --spark-conf spark.lorafleet.faults=pause@23 "$@" >"$OUT/$name.log" 2>&1; date +%s.%N >"$OUT/$name.end") &
  local run=$!
  while [ ! -f "$OUT/$name/_paused-23" ]; do sleep 0.2; done
  kill -KILL -- "-$(awk '$2 == "worker-3" {print $1}' "$OUT/cluster/pids")"
  touch "$OUT/$name/_resume-23"
  sleep "$DELAY"
  deploy/standalone/start-cluster.sh --state "$OUT/cluster" --add --workers 1 --cores 1 --memory 2g >/dev/null
  wait "$run" # the run's own end, which may come before the new node joins
  report "$name" "$(echo "$(cat "$OUT/$name.end") - $t0" | bc)"
}
run none
run exec-wait --spark-conf spark.lorafleet.faults=kill@24:rank=2
run exec-shrink --spark-conf spark.lorafleet.faults=kill@24:rank=2 --min-workers 2
node_loss node-wait
node_loss node-shrink --min-workers 2
for r in exec-wait exec-shrink node-wait node-shrink; do
  cmp -s "$OUT/none/adapter/adapter_model.safetensors" "$OUT/$r/adapter/adapter_model.safetensors" &&
    echo "$r: the adapter is the uninterrupted run's, byte for byte" || echo "$r: THE ADAPTER DIFFERS"
done
