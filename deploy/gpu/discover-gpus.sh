#!/usr/bin/env bash
# Spark resource discovery for NVIDIA GPUs: prints {"name":"gpu","addresses":["0","1",...]}.
# Point spark.executor.resource.gpu.discoveryScript (and spark.driver.resource.gpu.discoveryScript
# for local mode) at this file. With no nvidia-smi, or no GPU, it prints an empty address list.
set -uo pipefail
addresses=""
if command -v nvidia-smi > /dev/null 2>&1; then
  while read -r idx; do
    idx="${idx//[[:space:]]/}"
    [[ "$idx" =~ ^[0-9]+$ ]] || continue
    addresses+="${addresses:+,}\"$idx\""
  done < <(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null)
fi
printf '{"name":"gpu","addresses":[%s]}\n' "$addresses"
