#!/usr/bin/env bash
# One PPO step (rollout, log-probs, scoring, 4 epochs of updates), rlhf train-policy vs TRL's
# PPOTrainer, on the default model (SmolLM2-135M-Instruct), the same prompts, sizes, recipe and
# threads; each side first with 1 thread, then with 2. Prints a table for each thread count: ours
# (and each --ours-variant NAME=ARGS), TRL's and the ratios: seconds a step (median; goal: ours
# >= 2x as fast) and peak RSS (goal: ours <= 0.5x TRL's), with the generate / score / logprobs /
# train parts and the mean response length. The last line is
# `ppo_step_speedup_vs_trl X.XX peak_rss_ratio Y.YY` (2 threads, the first variant).
#
# TRL 1.x has no PPOTrainer any more, so the peer runs in its own venv, bench/.venv-ppo, made here
# (once; again only when a pinned version is missing) with TRL 0.29.1, the last release with it
# (trl.experimental.ppo), and the same transformers, peft and torch as .venv. When .venv (from
# scripts/setup --dev) has torch 2.11.0, bench/.venv-ppo borrows its packages through a .pth file
# and installs only what differs (TRL); otherwise it installs torch 2.11.0 itself from PyPI.
#
# Sizes (environment): PPO_B prompts a step (8), PPO_M micro batch (= B), PPO_P prompt tokens
# (64), PPO_T response tokens at most (32), PPO_STEPS timed steps (3), PPO_WARMUP warm-up steps
# left out of the medians (1), PPO_THREADS thread counts, measured in turn ("1 2"; one value
# works too), PPO_REPEATS runs of each side (1).
# Other bench/ppo_bench.py options follow on the command line (bench/ppo_bench.py --help), e.g.
# --ours-variant shared="--value-model shared" --ours-variant separate="--value-model separate".
# Usage: bench/run_ppo.sh [--build DIR] [--setup-only] [ppo_bench.py options...]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build SETUP_ONLY=0 EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --setup-only) SETUP_ONLY=1; shift ;;
    *) EXTRA+=("$1"); shift ;;
  esac
done

VENV=bench/.venv-ppo
PY=$VENV/bin/python
PINS=(trl==0.29.1 transformers==5.24.0 tokenizers==0.23.3 peft==0.21.2 accelerate==1.15.0 datasets==5.2.0
      safetensors==0.8.0 gguf==0.19.0)
TORCH=2.11.0

pins_ok() {  # every pinned version importable in the venv
  "$PY" - "$TORCH" "${PINS[@]}" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
torch, pins = sys.argv[1], sys.argv[2:]
ok = version("torch").split("+")[0] == torch
for p in pins:
    name, want = p.split("==")
    ok = ok and version(name) == want
sys.exit(0 if ok else 1)
EOF
}

if ! pins_ok; then
  echo "# making $VENV (TRL 0.29.1 with PPOTrainer)" >&2
  if [ ! -x "$PY" ]; then
    if [ -x .venv/bin/python ]; then .venv/bin/python -m venv "$VENV"; else python3 -m venv "$VENV"; fi
  fi
  echo '*' > "$VENV/.gitignore"
  SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  DEV_SITE=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null || true)
  if [ -n "$DEV_SITE" ] && [ "$(.venv/bin/python -c 'import torch; print(torch.__version__.split("+")[0])' \
       2>/dev/null)" = "$TORCH" ] && [ "$("$PY" -c 'import sys; print(sys.version_info[:2])')" = \
       "$(.venv/bin/python -c 'import sys; print(sys.version_info[:2])')" ]; then
    # After the venv's own site-packages: what is installed here shadows .venv's.
    echo "$DEV_SITE" > "$SITE/zz-rlhf-dev-venv.pth"
  else
    rm -f "$SITE/zz-rlhf-dev-venv.pth"
  fi
  "$PY" -m pip install -q "torch==$TORCH" "${PINS[@]}"
  pins_ok || { echo "$VENV: the pinned versions did not install" >&2; exit 1; }
fi
[ "$SETUP_ONLY" = 1 ] && exit 0

GGUF=${RLHF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rlhf}/models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$GGUF" ] || { echo "default model absent: run scripts/setup" >&2; exit 1; }
[ -x "$BUILD/rlhf" ] || { echo "$BUILD/rlhf not built" >&2; exit 1; }
echo "# $(nproc) cores: $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
exec "$PY" bench/ppo_bench.py --gguf "$GGUF" --build "$BUILD" --python "$PY" \
  --batch-size "${PPO_B:-8}" --micro-batch-size "${PPO_M:-0}" --prompt-length "${PPO_P:-64}" \
  --target-length "${PPO_T:-32}" --steps "${PPO_STEPS:-3}" --warmup-steps "${PPO_WARMUP:-1}" \
  --threads ${PPO_THREADS:-1 2} --repeats "${PPO_REPEATS:-1}" --timeout 3600 ${EXTRA[@]+"${EXTRA[@]}"}
