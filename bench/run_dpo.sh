#!/usr/bin/env bash
# DPO training, rlhf train-dpo vs TRL's DPOTrainer (TRL 1.16 in .venv), on the default model
# (SmolLM2-135M-Instruct, the same weights both sides), the hh-rlhf harmless split (first 2000
# pairs train, last 312 held out), the same token ids, recipe (sigmoid loss, beta 0.1, LoRA rank
# 8 alpha 8 on q/v, reference = the adapter off) and threads. bench/dpo_bench.py does the work:
#   speed     median seconds of an optimizer step (1 warm-up step left out) and each process's
#             peak RSS; goals TRL/ours >= 1.5, ours/TRL <= 0.6. Last line:
#             `dpo_step_speedup_vs_trl X.XX peak_rss_ratio Y.YY`
#   accuracy  held-out preference accuracy (share of the 312 pairs with reward(chosen) >
#             reward(rejected)) after the same training; goal ours - TRL >= -2 points. Last line:
#             `dpo_heldout_accuracy ours A trl B diff_points D`
# Sizes for the 2-core VM (2 threads each side; see bench/README.md, "DPO"):
#   speed     P 128, T 64, B 8, M 8, 1 warm-up + 3 timed steps (the first 32 pairs): 3.4 min
#             with ours fp32 and bf16 (TRL 1.8 min of it)
#   accuracy  P 64, T 32, B 8, M 8, 32 steps (the first 256 pairs, once), lr 2e-3 (multiplier
#             20: 12 steps of 16 pairs at 1e-3 left ours at 50.0 %, the validation loss at 0.692):
#             14 min on the quiet VM (ours 5.4, TRL 8.5: its training and scoring the 312 pairs)
# On a bigger machine give the full recipe, e.g. --acc-args "--prompt-length 256 --target-length
# 64 --batch-size 32 --steps 0 --lr-multiplier 1" (one epoch over the 2000 pairs).
# Usage: bench/run_dpo.sh [--mode speed|accuracy|both] [--speed-args "..."] [--acc-args "..."]
#                         [--build DIR] [--python PY]
# (--speed-args / --acc-args are appended to bench/dpo_bench.py's options and override them, e.g.
# --speed-args '--ours-variant fp32= --ours-variant bf16="--dtype auto"'.)
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=speed BUILD=build PY=.venv/bin/python SPEED_ARGS="" ACC_ARGS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --mode) MODE=$2; shift 2 ;;
    --speed-args) SPEED_ARGS=$2; shift 2 ;;
    --acc-args) ACC_ARGS=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
GGUF=${RLHF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rlhf}/models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$GGUF" ] || { echo "default model absent: run scripts/setup" >&2; exit 1; }
[ -x "$BUILD/rlhf" ] || { echo "$BUILD/rlhf not built" >&2; exit 1; }
COMMON=(--gguf "$GGUF" --build "$BUILD" --python "$PY" --threads "${DPO_THREADS:-$(nproc)}" --timeout 3600)
echo "# $(nproc) cores: $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
if [ "$MODE" = both ] || [ "$MODE" = accuracy ]; then
  eval "ACC=($ACC_ARGS)"
  "$PY" bench/dpo_bench.py --mode accuracy "${COMMON[@]}" --prompt-length 64 --target-length 32 \
    --batch-size 8 --micro-batch-size 8 --steps 32 --lr-multiplier 20 ${ACC[@]+"${ACC[@]}"}
fi
if [ "$MODE" = both ] || [ "$MODE" = speed ]; then
  eval "SPD=($SPEED_ARGS)"
  "$PY" bench/dpo_bench.py --mode speed "${COMMON[@]}" --prompt-length "${DPO_P:-128}" \
    --target-length "${DPO_T:-64}" --batch-size "${DPO_B:-8}" --micro-batch-size "${DPO_M:-8}" \
    --steps "${DPO_STEPS:-4}" --warmup-steps 1 ${SPD[@]+"${SPD[@]}"}
fi
