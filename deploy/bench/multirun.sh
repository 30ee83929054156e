#!/usr/bin/env bash
# Many adapters in one job against one job each, measured end to end on the benchmark model (the
# Llama shape of bench-step: hidden 512, 4 layers, FFN 1376, vocab 8192; random weights) and rows
# of 256 tokens. For K = 1, 4 and 8 runs of a small per-run batch (4 rows a step, 2 workers, 2 rows
# a micro-batch, STEPS steps, LoRA r16 on all-linear, each run its own learning rate and seed):
#   mixed       one `train --config` job with K runs: one JVM, one Spark session, one base load per
#               worker, each slot's forward and backward over the micro-batches of all K runs;
#   separate    the same job with --mixed-runs 1: a pass per run and slot;
#   sequential  K plain `train` jobs, one after another, each its own JVM, session and base load.
# Prints the wall time of each (start-up and base loading included), the peak RSS of the largest
# process (in local mode the driver and the workers share one JVM), and run 1's median training
# throughput (input tokens a second over steps 3..STEPS) in each job against the same run alone.
#   deploy/bench/multirun.sh [OUT] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/../.."
LF=deploy/bin/lorafleet
OUT=$(realpath -m "${1:-lorafleet-bench-multirun}")
STEPS=${2:-16}
rm -rf "$OUT" && mkdir -p "$OUT"
python3 - "$OUT" <<'EOF'
import random, sys
out = sys.argv[1]
words = ["w%d" % i for i in range(8180)]
open(out + "/words.txt", "w").write(" ".join(words) + "\n")
rng = random.Random(7)
with open(out + "/rows.jsonl", "w") as f:
    for _ in range(512):
        ctx = " ".join(rng.choice(words) for _ in range(200))
        tgt = " ".join(rng.choice(words) for _ in range(54))
        f.write('{"context": "%s", "target": "%s"}\n' % (ctx, tgt))
EOF
"$LF" init-model --arch llama --layers 4 --hidden 512 --heads 8 --intermediate 1376 --max-positions 512 --vocab-file "$OUT/words.txt" \
  --out "$OUT/model" >/dev/null
"$LF" prepare --input "$OUT/rows.jsonl" --model "$OUT/model" --out "$OUT/data" --max-seq-len 256 --shards 2 >/dev/null
common=(--model "$OUT/model" --data "$OUT/data" --workers 2 --steps "$STEPS" --global-batch 4 --micro-batch 2 --r 16 --lora-alpha 32
  --target-modules all-linear --checkpoint-every "$STEPS" --schedule constant)
LRS=(1e-4 2e-4 3e-4 5e-4 1e-3 2e-3 3e-3 5e-3)
timed() { # log, command...: runs it under GNU time, prints "seconds peak_kb"
  local log="$1"; shift
  /usr/bin/time -f "%e %M" -o "$log.time" "$@" >"$log" 2>&1
  cat "$log.time"
}
tps() { # metrics.jsonl: median input tokens a second over steps 3..
  python3 - "$1" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("%.0f" % statistics.median(r["input_tokens"] / (r["step_ms"] / 1000) for r in rows if r["step"] >= 3))
EOF
}
printf "%-3s %9s %9s %11s %22s %24s\n" K "mixed s" "sep. s" "sequential s" "peak RSS MB: mix/sep/seq" "run 1 tok/s: mix/sep/solo"
for K in 1 4 8; do
  job="$OUT/job-$K.yaml"
  { printf "runs:\n"; for i in $(seq 1 "$K"); do printf "  - {name: run%d, lr: %s, seed: %d}\n" "$i" "${LRS[$((i - 1))]}" "$i"; done; } >"$job"
  read -r mt mk < <(timed "$OUT/mixed-$K.log" "$LF" train --config "$job" "${common[@]}" --out "$OUT/mixed-$K")
  read -r pt pk < <(timed "$OUT/separate-$K.log" "$LF" train --config "$job" "${common[@]}" --mixed-runs 1 --out "$OUT/separate-$K")
  st=0; sk=0
  for i in $(seq 1 "$K"); do
    read -r t k < <(timed "$OUT/seq-$K-$i.log" "$LF" train "${common[@]}" --lr "${LRS[$((i - 1))]}" --seed "$i" --out "$OUT/seq-$K-$i")
    st=$(echo "$st + $t" | bc); [ "$k" -gt "$sk" ] && sk=$k
  done
  printf "%-3s %9.1f %9.1f %11.1f %22s %24s\n" "$K" "$mt" "$pt" "$st" "$((mk / 1024)) / $((pk / 1024)) / $((sk / 1024))" \
    "$(tps "$OUT/mixed-$K/runs/run1/metrics.jsonl") / $(tps "$OUT/separate-$K/runs/run1/metrics.jsonl") / $(tps "$OUT/seq-$K-1/metrics.jsonl")"
done
