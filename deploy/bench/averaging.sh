#!/usr/bin/env bash
# Averaging as part of the run, measured: on the demo's task (deploy/bin/lorafleet demo), for seeds
# 0, 1 and 2, at the demo's own rate (3e-3) and at a rate deliberately too high (1e-2), three runs
# of 300 steps each:
#   cosine    cosine decay after 10 warm-up steps: its final adapter;
#   constant  constant_with_warmup: its final adapter, the mean of its last 4 checkpoints (LAWA,
#             --average-last 4), its running EMA (--ema-decay 0.9) and BEMA (--bema, TRL's defaults),
#             and the best of live/EMA/BEMA by validation loss at each 25-step evaluation (best/);
#   wsm       warmup_stable_merge: the last 4 checkpoints merged, EMA-weighted (--merge-decay 0.5).
# Each candidate is evaluated on the demo's 100 held-out examples (loss and greedy exact match) in
# one pass, and the constant run's metrics.jsonl gives the step at which the live adapter, the EMA
# and BEMA first reached their lowest validation loss. Usage: deploy/bench/averaging.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/../.."
LF=deploy/bin/lorafleet
OUT=${1:-lorafleet-bench-averaging}
[ -d lorafleet-demo/data ] || "$LF" demo >/dev/null
common=(--model lorafleet-demo/base-model --data lorafleet-demo/data --workers 2 --steps 300 --global-batch 32 --micro-batch 16
  --shuffle-window 8 --r 16 --lora-alpha 32 --target-modules q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,lm_head
  --checkpoint-every 25 --keep-checkpoints 12 --warmup 10 --overwrite)
# eval.json's candidates, named by their place in the eval command below: "name loss exact_match"
table() {
  awk -F' : ' 'BEGIN {split("base cosine constant constant-LAWA constant-EMA constant-BEMA constant-best WSM-EMA-merge", name, " ")}
    /"loss"/ {gsub(/,/, "", $2); l = $2}
    /"exact_match"/ {gsub(/,/, "", $2); printf "%-22s %.5f %5.1f%%\n", name[++n], l, 100 * $2}' "$1"
}
# the first step at which metrics.jsonl's FIELD reached its minimum
first_best() {
  grep -o "\"step\":[0-9]*\|\"$2\":[0-9.eE+-]*" "$1" | awk -F: '/"step"/ {s = $2} !/"step"/ {if (best == "" || $2 < best) {best = $2; at = s}} END {print at}'
}
for lr in 3e-3 1e-2; do
  for seed in 0 1 2; do
    d="$OUT/lr$lr-seed$seed"
    mkdir -p "$d"
    "$LF" train "${common[@]}" --lr "$lr" --seed "$seed" --schedule cosine --out "$d/cosine" >"$d/cosine.log" 2>&1
    "$LF" train "${common[@]}" --lr "$lr" --seed "$seed" --schedule constant_with_warmup --average-last 4 --ema-decay 0.9 --bema \
      --eval-every 25 --eval-examples 1000 --metric-for-best-model loss --out "$d/constant" >"$d/constant.log" 2>&1
    "$LF" train "${common[@]}" --lr "$lr" --seed "$seed" --schedule warmup_stable_merge --merge-window 4 --merge-decay 0.5 \
      --out "$d/wsm" >"$d/wsm.log" 2>&1
    "$LF" eval --model lorafleet-demo/base-model --data lorafleet-demo/data-heldout --split train --overwrite --out "$d/eval" \
      --adapter "$d/cosine/adapter" --adapter "$d/constant/adapter" --adapter "$d/constant/averaged" --adapter "$d/constant/ema" \
      --adapter "$d/constant/bema" --adapter "$d/constant/best" --adapter "$d/wsm/adapter" >"$d/eval.log" 2>&1
    echo "== lr $lr, seed $seed: held-out loss and exact match"
    table "$d/eval/eval.json"
    echo "   lowest validation loss first reached at step: live $(first_best "$d/constant/metrics.jsonl" val_loss)," \
      "ema $(first_best "$d/constant/metrics.jsonl" val_loss_ema), bema $(first_best "$d/constant/metrics.jsonl" val_loss_bema)"
  done
done
