#!/usr/bin/env bash
# Generation throughput, rlhf vs transformers' generate, on the default model (SmolLM2-135M),
# same prompt, greedy, same number of new tokens, same threads, in one run. Prints each pair and
# the ratio rlhf / transformers (medians of --repeats runs).
# Usage: bench/run_generate.sh [--device cpu|cuda] [--dtypes "fp32 bf16"] [--batches "1 16"]
#                              [--new-tokens N] [--repeats R] [--build DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=cpu DTYPES="fp32 bf16" BATCHES="1 16" NEW=64 REPEATS=5 BUILD=build PY=.venv/bin/python
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE=$2; shift 2 ;;
    --dtypes) DTYPES=$2; shift 2 ;;
    --batches) BATCHES=$2; shift 2 ;;
    --new-tokens) NEW=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
GGUF=${RLHF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rlhf}/models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$GGUF" ] || { echo "default model absent: run scripts/setup" >&2; exit 1; }
THREADS=$(nproc)
echo "# generation tokens/s, $(nproc) threads, $NEW new tokens, device $DEVICE: $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
printf '%-6s %-5s %12s %14s %8s\n' batch dtype rlhf transformers ratio
for dt in $DTYPES; do
  for b in $BATCHES; do
    ours=$("$BUILD/bench/bench_generate" --dtype "$dt" --device "$DEVICE" --batch "$b" --new-tokens "$NEW" --repeats "$REPEATS" --threads "$THREADS")
    peer=$("$PY" bench/generate_peer.py --gguf "$GGUF" --dtype "$dt" --device "$DEVICE" --batch "$b" --new-tokens "$NEW" --repeats "$REPEATS" --threads "$THREADS" 2>/dev/null | tail -1)
    o=$(echo "$ours" | sed -E 's/.*"tokens_per_s": ([0-9.]+).*/\1/')
    p=$(echo "$peer" | sed -E 's/.*"tokens_per_s": ([0-9.]+).*/\1/')
    printf '%-6s %-5s %12s %14s %7.2fx\n' "$b" "$dt" "$o" "$p" "$(echo "$o / $p" | bc -l)"
  done
done
