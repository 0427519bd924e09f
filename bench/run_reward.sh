#!/usr/bin/env bash
# Reward-model training, rlhf train-reward vs TRL's RewardTrainer, on the default model
# (SmolLM2-135M-Instruct), the hh-rlhf harmless split (first 2000 pairs train, last 312 held
# out), the same token ids, recipe and threads. Prints, per mode, ours, TRL's, and the ratio:
#   throughput  pairs/s and tokens/s (median of --repeats), peak RSS; goals >= 1.3x, <= 0.7x
#   accuracy    held-out accuracy after the same training; goal ours - TRL >= -2 points
# Defaults are sized for a 2-core CPU, where TRL trains ~0.15 pairs/s at P=256/T=64 and ~0.33
# pairs/s at P=64/T=32 (about 55 non-pad tokens/s; held-out scoring ~260 tokens/s):
#   throughput  P=256 T=64 B=16 M=8, 3 steps, 2 repeats: TRL ~6 min a run (5.5 training,
#               ~0.5 loading, 16 held-out pairs); ~12 min for TRL, ours on top
#   accuracy    P=64 T=32 B=16 M=8, 12 steps (192 pairs, 0.1 epoch), lr 1e-3 (multiplier 10, so
#               that so few steps move the model off chance): TRL ~10 min training + ~3 min
#               scoring the 312 held-out pairs + loading, ~14 min; ours on top
# so 35-45 minutes in all with ours at or above TRL's speed. On a bigger machine give the full
# recipe: --acc-args "--prompt-length 256 --target-length 64 --batch-size 32 --steps 0
# --lr-multiplier 1" (one epoch, 63 steps, lr 1e-4) and --tp-args "--steps 4 --repeats 5".
# Usage: bench/run_reward.sh [--mode both|throughput|accuracy] [--tp-args "..."] [--acc-args "..."]
#                            [--build DIR] [--python PY]
# (--tp-args / --acc-args are appended to bench/reward_bench.py's options and override them.)
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=both BUILD=build PY=.venv/bin/python TP_ARGS="" ACC_ARGS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --mode) MODE=$2; shift 2 ;;
    --tp-args) TP_ARGS=$2; shift 2 ;;
    --acc-args) ACC_ARGS=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
GGUF=${RLHF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rlhf}/models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$GGUF" ] || { echo "default model absent: run scripts/setup" >&2; exit 1; }
[ -x "$BUILD/rlhf" ] || { echo "$BUILD/rlhf not built" >&2; exit 1; }
COMMON=(--gguf "$GGUF" --build "$BUILD" --python "$PY" --threads "$(nproc)" --timeout 2400)
echo "# $(nproc) threads: $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
if [ "$MODE" = both ] || [ "$MODE" = throughput ]; then
  # shellcheck disable=SC2086
  "$PY" bench/reward_bench.py --mode throughput "${COMMON[@]}" --prompt-length 256 --target-length 64 \
    --batch-size 16 --micro-batch-size 8 --steps 3 --heldout-pairs 16 --repeats 2 $TP_ARGS
fi
if [ "$MODE" = both ] || [ "$MODE" = accuracy ]; then
  # shellcheck disable=SC2086
  "$PY" bench/reward_bench.py --mode accuracy "${COMMON[@]}" --prompt-length 64 --target-length 32 \
    --batch-size 16 --micro-batch-size 8 --steps 12 --lr-multiplier 10 --repeats 1 $ACC_ARGS
fi
