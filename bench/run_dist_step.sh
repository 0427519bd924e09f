#!/usr/bin/env bash
# Data-parallel training steps on this machine: `rlhf train-reward` and `rlhf train-policy` on the
# default model (SmolLM2-135M-Instruct), one process with all cores against 2 local ranks
# (`--nproc-per-node 2`, one core each), the same global batch and seed. Per trainer it prints
# the median seconds a step of each and their ratio (the 2-rank speed-up), and for the 2-rank run
# the median per step of: the bytes all-reduced (dist/allreduce_bytes), the time in collectives
# (time/collectives: the transfers plus the wait for the slower rank), the time one all-reduce of
# those bytes takes on its own (`rlhf dist-check`, the transfer), and the difference: the time a
# step spends waiting on its peer.
# Data: examples/preference.jsonl (reward model) and examples/summarize/prompts.jsonl (policy).
# Sizes (environment): STEPS timed steps (4, the first left out as warm-up), RM_B / RM_M (8 / 2)
# pairs, PPO_B / PPO_M (8 / 2) rollouts, PPO_P / PPO_T (128 / 24) tokens. Then the PPO step's parts
# (generation, scoring, update) of both.
# Usage: bench/run_dist_step.sh [--build DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build
[ "${1:-}" = "--build" ] && BUILD=$2
RLHF=$BUILD/rlhf
STEPS=${STEPS:-4} RM_B=${RM_B:-8} RM_M=${RM_M:-2} PPO_B=${PPO_B:-8} PPO_M=${PPO_M:-2} PPO_P=${PPO_P:-128}
PPO_T=${PPO_T:-24}
CORES=$(nproc)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rlhf-dist-step.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# median of the values of TAG in a metrics.jsonl, steps 2.. (step 1 is warm-up); with SCALE /
# value when INVERT is set (pairs/s -> seconds a step).
median_of() {  # file tag [invert_numerator]
  python3 - "$@" <<'EOF'
import json, statistics, sys
path, tag = sys.argv[1], sys.argv[2]
num = float(sys.argv[3]) if len(sys.argv) > 3 else None
v = [r[tag] for r in map(json.loads, open(path)) if tag in r and r["step"] > 1]
v = [num / x for x in v] if num else v
print(f"{statistics.median(v):.6g}" if v else "nan")
EOF
}

reward() {  # launcher threads out
  $RLHF $1 train-reward --preference-dataset examples/preference.jsonl --large-model-reference smollm2-135m-instruct \
    --output "$WORK/$3" --reward-model-train-steps "$STEPS" --batch-size "$RM_B" --micro-batch-size "$RM_M" \
    --validation-fraction 0 --prompt-sequence-length "$PPO_P" --target-sequence-length "$PPO_T" \
    --checkpoint-every 1000 --threads "$2" --no-progress > "$WORK/$3.log" 2>&1 ||
    { cat "$WORK/$3.log" >&2; exit 1; }
}
policy() {  # launcher threads out
  $RLHF $1 train-policy --prompt-dataset examples/summarize/prompts.jsonl --reward-model "$WORK/rm1" \
    --output "$WORK/$3" --reinforcement-learning-train-steps "$STEPS" --batch-size "$PPO_B" \
    --micro-batch-size "$PPO_M" --prompt-sequence-length "$PPO_P" --target-sequence-length "$PPO_T" \
    --checkpoint-every 1000 --threads "$2" --no-progress > "$WORK/$3.log" 2>&1 ||
    { cat "$WORK/$3.log" >&2; exit 1; }
}

echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $CORES cores; $STEPS steps (first left out)"
reward "" "$CORES" rm1
reward "--nproc-per-node 2" 1 rm2
policy "" "$CORES" ppo1
policy "--nproc-per-node 2" 1 ppo2

row() {  # name one_process_seconds two_rank_dir
  local one=$1 two=$2 dir=$3 bytes coll xfer
  bytes=$(median_of "$dir/logs/metrics.jsonl" dist/allreduce_bytes)
  coll=$(median_of "$dir/logs/metrics.jsonl" time/collectives)
  xfer=$($RLHF --nproc-per-node 2 dist-check --megabytes "$(python3 -c "print($bytes / 1e6)")" --iterations 50 2>&1 |
         grep '^\[rank 0\]' | sed -nE 's/.* in ([0-9.]+) ms.*/\1/p')
  python3 - "$NAME" "$one" "$two" "$bytes" "$coll" "$xfer" <<'EOF'
import sys
name, one, two, b, coll, xfer = sys.argv[1], *map(float, sys.argv[2:])
print(f"{name:<14} {one:>10.2f} {two:>10.2f} {one / two:>8.2f}x {b:>12.0f} {coll * 1e3:>14.1f} {xfer:>12.2f} "
      f"{coll * 1e3 - xfer:>12.1f}")
EOF
}
printf '%-14s %10s %10s %9s %12s %14s %12s %12s\n' "trainer" "1 proc s" "2 ranks s" "speed-up" "bytes/step" \
  "collect. ms" "xfer ms" "waiting ms"
NAME=train-reward row "$(median_of "$WORK/rm1/logs/metrics.jsonl" throughput/pairs_per_second "$RM_B")" \
  "$(median_of "$WORK/rm2/logs/metrics.jsonl" throughput/pairs_per_second "$RM_B")" "$WORK/rm2"
NAME=train-policy row "$(median_of "$WORK/ppo1/logs/metrics.jsonl" time/step)" \
  "$(median_of "$WORK/ppo2/logs/metrics.jsonl" time/step)" "$WORK/ppo2"
# Where a PPO step's time goes, 1 process against 2 ranks (medians, seconds).
printf '\n%-14s %10s %10s %9s\n' "train-policy" "1 proc s" "2 ranks s" "speed-up"
for part in time/generate time/score time/train; do
  a=$(median_of "$WORK/ppo1/logs/metrics.jsonl" "$part") b=$(median_of "$WORK/ppo2/logs/metrics.jsonl" "$part")
  python3 -c "print(f'{\"$part\":<14} {$a:>10.2f} {$b:>10.2f} {$a / $b:>8.2f}x')"
done
