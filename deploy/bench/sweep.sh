#!/usr/bin/env bash
# The demo's task (deploy/bin/lorafleet demo: NL-to-SQL on its pretrained base) as a sweep in one
# job: 3 learning rates x 2 ranks, STEPS steps each (the demo trains 500 at 3e-3, r16), then the
# soups of the six adapters chosen by exact match on the data's validation split (lorafleet soup),
# and every run's adapter and both soups evaluated on the demo's 100 held-out examples in one pass.
#   deploy/bench/sweep.sh [OUT] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/../.."
LF=deploy/bin/lorafleet
OUT=$(realpath -m "${1:-lorafleet-bench-sweep}")
STEPS=${2:-150}
[ -d lorafleet-demo/data ] || "$LF" demo >/dev/null
rm -rf "$OUT" && mkdir -p "$OUT"
cat >"$OUT/sweep.yaml" <<EOF
# lorafleet train --config sweep.yaml: six runs on one base, one barrier stage
model: $PWD/lorafleet-demo/base-model
data: $PWD/lorafleet-demo/data
out: $OUT/sweep
workers: 2
steps: $STEPS
global_batch: 32
micro_batch: 16
target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, lm_head]
schedule: cosine
warmup: 10
checkpoint_every: 50
eval_every: 50
eval_examples: 64
grid:
  lr: [3.0e-4, 1.0e-3, 3.0e-3]
  r: [8, 16]
EOF
t0=$(date +%s.%N)
"$LF" train --config "$OUT/sweep.yaml" --lora-alpha 32 >"$OUT/train.log" 2>&1
printf "sweep of 6 runs, %d steps each: %.0f s\n" "$STEPS" "$(echo "$(date +%s.%N) - $t0" | bc)"
"$LF" soup --runs "$OUT/sweep" --metric exact_match --split validation --limit 64 --rank 16 --out "$OUT/soup" >"$OUT/soup.log" 2>&1
tail -n 9 "$OUT/soup.log" | head -n 8
adapters=()
for d in "$OUT"/sweep/runs/*/adapter; do adapters+=(--adapter "$d"); done
"$LF" eval --model lorafleet-demo/base-model --data lorafleet-demo/data-heldout --split train --limit 100 "${adapters[@]}" \
  --adapter "$OUT/soup/uniform" --adapter "$OUT/soup/greedy" --out "$OUT/heldout" >"$OUT/heldout.log" 2>&1
echo "held-out (the demo's 100 examples):"
python3 - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
soup = json.load(open(out + "/soup/soup.json"))
print("greedy soup ingredients:", ", ".join(soup["greedy_soup"]["ingredients"]))
for r in json.load(open(out + "/heldout/eval.json")):
    a = r["adapter"].rstrip("/")
    name = a.split("/")[-2] if a.endswith("/adapter") else a.split("/")[-1] + " soup" if a else "base"
    print("  %-22s loss %.5f  exact match %5.1f%%" % (name, r["loss"], 100 * r["exact_match"]))
EOF
