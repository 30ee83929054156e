#!/usr/bin/env bash
# The time one lost executor costs, waiting for a replacement against --min-workers, measured on a
# standalone cluster of three 1-core workers (deploy/standalone) with the demo's task: 60 steps of
# a global batch of 24 rows in 3 slots, a checkpoint every 10. Three runs: none lost; the executor
# of rank 2 SIGKILLs itself before step 25 (kill@24) and the run waits for the master's replacement
# (the default --min-workers, 3); the same loss with --min-workers 2, where the run goes on from
# checkpoint 20 on 2 workers at once and grows back to 3 at the first checkpoint after the
# replacement registers. Prints each run's wall time and its steps on fewer workers, and checks that
# all three adapters are the same bytes.
#   deploy/bench/elastic.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=$(realpath -m "${1:-lorafleet-bench-elastic}")
[ -d lorafleet-demo/data ] || deploy/bin/lorafleet demo >/dev/null
rm -rf "$OUT" && mkdir -p "$OUT"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
deploy/standalone/start-cluster.sh --workers 3 --cores 1 --memory 2g --port "$port" --state "$OUT/cluster" >/dev/null
trap 'deploy/standalone/stop-cluster.sh --state "$OUT/cluster" >/dev/null' EXIT
common=(--model "$PWD/lorafleet-demo/base-model" --data "$PWD/lorafleet-demo/data" --workers 3 --steps 60 --global-batch 24 --micro-batch 8
  --checkpoint-every 10 --r 16 --lora-alpha 32 --target-modules q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,lm_head --lr 3e-3
  --executor-wait-ms 600000)
run() { # name, extra train flags...
  local name="$1"; shift
  local t0=$(date +%s.%N)
  deploy/standalone/submit.sh --state "$OUT/cluster" --conf spark.executor.memory=1500m -- train "${common[@]}" --out "$OUT/$name" "$@" \
    >"$OUT/$name.log" 2>&1
  local t1=$(date +%s.%N)
  printf "%-10s %8.1f s  steps on fewer than 3 workers: %s\n" "$name" "$(echo "$t1 - $t0" | bc)" \
    "$(grep -c '"workers":[12],' "$OUT/$name/metrics.jsonl" || true)"
}
run none
run wait --spark-conf spark.lorafleet.faults=kill@24:rank=2
run shrink --spark-conf spark.lorafleet.faults=kill@24:rank=2 --min-workers 2
for r in wait shrink; do
  cmp -s "$OUT/none/adapter/adapter_model.safetensors" "$OUT/$r/adapter/adapter_model.safetensors" && echo "$r: the adapter is the uninterrupted run's, byte for byte" ||
    echo "$r: THE ADAPTER DIFFERS"
done
