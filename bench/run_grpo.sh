#!/usr/bin/env bash
# One GRPO step and one RLOO step, rlhf train-policy --method grpo|rloo vs TRL's GRPOTrainer /
# RLOOTrainer (TRL 1.16 in .venv; transformers' generate, no vLLM), on the default model
# (SmolLM2-135M-Instruct, the same weights both sides), the same prompts (TL;DR posts cut to P
# tokens), sizes, rule reward (max-words=N on ours, the same Python function on TRL's), LoRA and
# threads; each method's KL coefficient its TRL default (GRPO 0, RLOO 0.05), GRPO's loss dapo and
# group scaling. bench/grpo_bench.py does the work and prints, per method, ours (and each
# --ours-variant), TRL's and the ratios: median seconds a step (goal: ours >= 1.5x as fast) and
# peak RSS (goal: ours <= 0.6x TRL's), with the generate / score / logprobs / train parts. The
# last two lines are `grpo_step_speedup_vs_trl X.XX peak_rss_ratio Y.YY` and
# `rloo_step_speedup_vs_trl X.XX peak_rss_ratio Y.YY`.
#
# Sizes (environment): GRPO_B prompts a step (4), GRPO_G completions a prompt (4), GRPO_M
# completions a micro batch (16, the whole batch), GRPO_P prompt tokens (64), GRPO_T completion tokens at most (32),
# GRPO_WORDS the rule's word limit (20: with T 32 a limit of 50 would pass every completion and
# leave every advantage 0), GRPO_STEPS timed steps (3) after GRPO_WARMUP (1), GRPO_THREADS (2),
# GRPO_REPEATS runs of each side (1). About 5 minutes on the 2-core VM.
# Other bench/grpo_bench.py options follow on the command line (--help), e.g.
# --ours-variant fp32= --ours-variant bf16="--dtype auto", or --methods grpo.
# Usage: bench/run_grpo.sh [--build DIR] [grpo_bench.py options...]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    *) EXTRA+=("$1"); shift ;;
  esac
done
PY=.venv/bin/python
GGUF=${RLHF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rlhf}/models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$GGUF" ] || { echo "default model absent: run scripts/setup" >&2; exit 1; }
[ -x "$BUILD/rlhf" ] || { echo "$BUILD/rlhf not built" >&2; exit 1; }
echo "# $(nproc) cores: $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
exec "$PY" bench/grpo_bench.py --gguf "$GGUF" --build "$BUILD" --python "$PY" \
  --batch-size "${GRPO_B:-4}" --num-generations "${GRPO_G:-4}" --micro-batch-size "${GRPO_M:-16}" \
  --prompt-length "${GRPO_P:-64}" --target-length "${GRPO_T:-32}" --max-words "${GRPO_WORDS:-20}" \
  --steps "${GRPO_STEPS:-3}" --warmup-steps "${GRPO_WARMUP:-1}" --threads "${GRPO_THREADS:-2}" \
  --repeats "${GRPO_REPEATS:-1}" --timeout 3600 ${EXTRA[@]+"${EXTRA[@]}"}
