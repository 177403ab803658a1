#!/usr/bin/env bash
# Runs every PyTorch timing script with the thread count of the Rust benches (default: all
# cores, as rayon) and writes JSON lines to target/bench-results/torch/ for compare.py.
#   tools/bench/run_torch.sh [THREADS]   (python: $PYTHON or python3, with tools/reference/requirements.txt)
set -euo pipefail
cd "$(dirname "$0")/../.."
threads="${1:-$(nproc)}"
py="${PYTHON:-python3}"
mkdir -p target/bench-results/torch
for s in upn encoder llm; do
  "$py" "tools/bench/${s}_torch.py" --threads "$threads" | tee "target/bench-results/torch/$s.jsonl"
done
