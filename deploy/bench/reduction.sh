#!/usr/bin/env bash
# Slot-ordered reduction (the update is the same bytes for any worker count) against the rank order
# it replaced, measured: the demo's task (deploy/bin/lorafleet demo), 20 steps of a global batch of
# 48 rows on local[4], every worker pushing alone (--pre-reduce none, so each push crosses the
# channel), at 2 and 4 workers, with 8 slots (--micro-batch 6: aligned, one node per worker) and 6
# (--micro-batch 8: 4 workers get 1, 2, 1 and 2 slots, and a range that is not a tree node pushes
# each node inside it). Prints, per run, the median step_ms and compute_ms of steps 3-20 and the
# bytes a step moves, from metrics.jsonl. The slot-order code pins PyTorch's intra-op threads
# (--intra-op-threads, default spark.task.cpus = 1) where the old code left torch's default (every
# core, for each of the workers); "slot-t2" runs it at 2 threads, the old default on a 2-core machine,
# so that the reduction's own cost is compared at equal threads.
#   deploy/bench/reduction.sh OLD_CHECKOUT [OUT]
# OLD_CHECKOUT: a built checkout of the rank-order code (git worktree add /tmp/old 603b703 &&
# (cd /tmp/old && mvn -B -o -q package -DskipTests)); this checkout is the slot-order code.
set -euo pipefail
cd "$(dirname "$0")/../.."
OLD=${1:?usage: deploy/bench/reduction.sh OLD_CHECKOUT [OUT]}
OUT=${2:-lorafleet-bench-reduction}
[ -d lorafleet-demo/data ] || deploy/bin/lorafleet demo >/dev/null
rm -rf "$OUT" && mkdir -p "$OUT"
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
field() { grep -o "\"$2\":[0-9.eE+-]*" "$1" | tail -n +3 | cut -d: -f2; }
printf "%-8s %-7s %-5s %10s %12s %12s\n" code workers slots step_ms compute_ms bytes/step
for micro in 6 8; do
  for n in 2 4; do
    for code in rank slot slot-t2; do
      root=$PWD; [ "$code" = rank ] && root=$OLD
      threads=(); [ "$code" = slot-t2 ] && threads=(--intra-op-threads 2)
      d="$OUT/$code-w$n-m$micro"
      "$root/deploy/bin/lorafleet" train --model lorafleet-demo/base-model --data lorafleet-demo/data --workers "$n" --local-threads 4 \
        --steps 20 --global-batch 48 --micro-batch "$micro" --pre-reduce none --checkpoint-every 20 --r 16 --lora-alpha 32 \
        --target-modules q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,lm_head ${threads[@]+"${threads[@]}"} --out "$d" >"$d.log" 2>&1
      printf "%-8s %-7s %-5s %10.1f %12.1f %12s\n" "$code" "$n" $((48 / micro)) "$(field "$d/metrics.jsonl" step_ms | median)" \
        "$(field "$d/metrics.jsonl" compute_ms | median)" "$(field "$d/metrics.jsonl" bytes | median)"
    done
  done
done
