#!/usr/bin/env bash
# Bulk inference throughput, `rlhf infer` vs transformers' generate, on the default model
# (SmolLM2-135M-Instruct Q4_1; transformers dequantizes it to fp32, ours too), in one run: the
# same prompts and ids, the seed's instruction, greedy, fixed batches with left padding, fp32,
# the same threads. Prints prompts/s and tokens/s of both (medians of --repeats passes), the
# ratio, and how many predictions are the same text.
# Usage: bench/run_infer.sh [--prompts N] [--batch-size B] [--new-tokens N] [--repeats R]
#                           [--threads T] [--build DIR] [--python PY]
set -euo pipefail
cd "$(dirname "$0")/.."
N=32 BATCH=8 NEW=64 REPEATS=3 THREADS=$(nproc) BUILD=build PY=.venv/bin/python
INSTRUCTION="Summarize in less than 50 words."
while [ $# -gt 0 ]; do
  case "$1" in
    --prompts) N=$2; shift 2 ;;
    --batch-size) BATCH=$2; shift 2 ;;
    --new-tokens) NEW=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
GGUF=${RLHF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rlhf}/models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$GGUF" ] || { echo "default model absent: run scripts/setup" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# N prompts cycling through the example prompts and the course's sample prompts (when present).
SOURCES=(examples/prompts.jsonl)
[ -f ../shared/data/course/sample_prompt.jsonl ] && SOURCES+=(../shared/data/course/sample_prompt.jsonl)
cat "${SOURCES[@]}" | grep -v '^[[:space:]]*$' > "$WORK/unique.jsonl"
awk -v n="$N" '{ l[NR] = $0 } END { for (i = 0; i < n; ++i) print l[i % NR + 1] }' "$WORK/unique.jsonl" > "$WORK/prompts.jsonl"

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "# bulk inference: $N prompts ($(wc -l < "$WORK/unique.jsonl") distinct), batch $BATCH, $NEW new tokens at most," \
     "greedy, fp32, $THREADS threads: $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
: > "$WORK/ours.txt"
for r in $(seq "$REPEATS"); do
  "$BUILD/rlhf" infer --input "$WORK/prompts.jsonl" --output "$WORK/ours.jsonl" --restart --instruction "$INSTRUCTION" \
    --max-new-tokens "$NEW" --batch-size "$BATCH" --dtype fp32 --threads "$THREADS" --no-progress 2> "$WORK/log"
  tail -1 "$WORK/log" | sed -E 's/.* ([0-9.]+) prompts\/s, ([0-9.]+) tokens\/s \(([0-9]+) new tokens\).*/\1 \2 \3/' >> "$WORK/ours.txt"
done
o_p=$(cut -d' ' -f1 "$WORK/ours.txt" | median)
o_t=$(cut -d' ' -f2 "$WORK/ours.txt" | median)
o_n=$(tail -1 "$WORK/ours.txt" | cut -d' ' -f3)
peer=$("$PY" bench/infer_hf.py --gguf "$GGUF" --input "$WORK/prompts.jsonl" --instruction "$INSTRUCTION" \
  --rlhf "$BUILD/rlhf" --batch-size "$BATCH" --max-new-tokens "$NEW" --repeats "$REPEATS" --threads "$THREADS" \
  --compare "$WORK/ours.jsonl" 2>/dev/null | tail -1)
field() { echo "$peer" | sed -E "s/.*\"$1\": ([0-9.]+).*/\1/"; }
p_p=$(field prompts_per_s) p_t=$(field tokens_per_s) p_n=$(field new_tokens) same=$(field same_predictions)
printf '%-13s %10s %10s %11s\n' impl prompts/s tokens/s new_tokens
printf '%-13s %10.3f %10.1f %11s\n' rlhf "$o_p" "$o_t" "$o_n"
printf '%-13s %10.3f %10.1f %11s\n' transformers "$p_p" "$p_t" "$p_n"
printf '%-13s %9.2fx %9.2fx\n' ratio "$(echo "$o_p / $p_p" | bc -l)" "$(echo "$o_t / $p_t" | bc -l)"
echo "same predictions: $same of $N"
