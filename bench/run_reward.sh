#!/usr/bin/env bash
# Reward-model training, rlhf train-reward vs TRL's RewardTrainer, on the default model
# (SmolLM2-135M-Instruct), the hh-rlhf harmless split (first 2000 pairs train, last 312 held
# out), the same token ids, recipe and threads. Prints, per mode, ours, TRL's, and the ratio:
#   throughput  pairs/s and tokens/s (median of --repeats), peak RSS; goals >= 1.3x, <= 0.7x
#   accuracy    held-out accuracy after the same training; goal ours - TRL >= -2 points
# Sizes for a 2-core CPU, from runs on a quiet 2-core AMD EPYC VM (2 threads each side):
#   TRL trains ~0.52 pairs/s at P=256/T=64 and ~1.4 pairs/s at P=64/T=32 (about 140 and 220
#   sequence tokens/s), scores the 312 held-out pairs at P=64/T=32 in ~95 s, loads in ~30 s;
#   ours was 1.65x / 1.03x as fast at those lengths.
#   throughput  P=256 T=64 B=16 M=8, 4 steps, 3 repeats: TRL ~2.5 min a run, ours ~2 (the
#               reader, validation of 16 pairs and the final centring pass are outside the
#               figures but in the wall time): ~15 min
#   accuracy    P=64 T=32 B=32 M=8, 28 steps (the first 896 pairs, once), lr 1e-3 (multiplier
#               10: at 1e-4 this few steps leave both models at chance): TRL ~11 min training
#               + ~2 min loading and scoring; ours about the same: ~26 min
# so about 40 minutes in all on a quiet machine; other heavy processes on the same cores slow
# both sides 3-5x (and make the ratios noise), so run it alone. On a bigger machine give the full
# recipe: --acc-args "--prompt-length 256 --target-length 64 --batch-size 32 --steps 0
# --lr-multiplier 1" (one epoch over the 2000 pairs, 63 steps, lr 1e-4) and
# --tp-args "--repeats 5".
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
COMMON=(--gguf "$GGUF" --build "$BUILD" --python "$PY" --threads "$(nproc)" --timeout 3600)
echo "# $(nproc) threads: $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
if [ "$MODE" = both ] || [ "$MODE" = throughput ]; then
  # shellcheck disable=SC2086
  "$PY" bench/reward_bench.py --mode throughput "${COMMON[@]}" --prompt-length 256 --target-length 64 \
    --batch-size 16 --micro-batch-size 8 --steps 4 --heldout-pairs 16 --repeats 3 $TP_ARGS
fi
if [ "$MODE" = both ] || [ "$MODE" = accuracy ]; then
  # shellcheck disable=SC2086
  "$PY" bench/reward_bench.py --mode accuracy "${COMMON[@]}" --prompt-length 64 --target-length 32 \
    --batch-size 32 --micro-batch-size 8 --steps 28 --lr-multiplier 10 --repeats 1 $ACC_ARGS
fi
