#!/usr/bin/env bash
# bench/gpu/check.sh: one command that proves the GPU path on one H100/H200 (about 10 minutes,
# no network, no model download): builds with CUDA, runs the model tests on cuda, and measures a
# randomly initialised ~1B-parameter Llama-shaped model (16 layers x 2048, written here):
# generation tokens/s at batch 1 and 64, reward-model pairs/s, one PPO step and its phases,
# peak GPU memory, and the model FLOPs utilisation of the training phases against the GPU's
# bf16 peak. Writes one JSON file and prints a short table.
#
# --cpu runs every part that can run on a CPU, at tiny sizes, with the CPU build in build/:
# a test of this script itself.
#
# Usage: bench/gpu/check.sh [--cpu] [--out FILE] [--build-dir DIR] [--jobs N] [--skip-build]
#                           [--skip-tests] [--keep-model]
#   --out FILE     the JSON (default: $OUT/results.json when $OUT is a folder, else
#                  bench/gpu/results.json)
#   --build-dir    default build-cuda (GPU) or build (--cpu)
#   --jobs N       compile jobs (default: every core)
#   --skip-build   use the binaries already in the build folder
#   --skip-tests   measure only
#   --keep-model   keep the written model (the 1B one is 2 GB) in BUILD/gpu-check/
# Environment: RLHF_BUILD_LOCK=FILE makes the build step wait for flock on FILE (a tree shared
# by several builds); CUDA_VISIBLE_DEVICES as usual (the first visible GPU is measured).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD

MODE=cuda OUT_FILE="" BUILD="" JOBS=$(nproc) SKIP_BUILD=0 SKIP_TESTS=0 KEEP_MODEL=0
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) MODE=cpu ;;
    --out) OUT_FILE=$2; shift ;;
    --build-dir) BUILD=$2; shift ;;
    --jobs) JOBS=$2; shift ;;
    --skip-build) SKIP_BUILD=1 ;;
    --skip-tests) SKIP_TESTS=1 ;;
    --keep-model) KEEP_MODEL=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "check.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$BUILD" ] || { [ "$MODE" = cuda ] && BUILD=build-cuda || BUILD=build; }
if [ -z "$OUT_FILE" ]; then
  if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then OUT_FILE=$OUT/results.json; else OUT_FILE=bench/gpu/results.json; fi
fi
PY=python3  # the summary uses the standard library only

# ---- sizes ------------------------------------------------------------------------------
if [ "$MODE" = cuda ]; then
  DTYPE=bf16
  MODEL_ARGS="--layers 16 --hidden 2048 --intermediate 8192 --heads 32 --kv-heads 8"
  GEN_TOKENS=128 GEN_REPEATS=3
  RM_P=256 RM_T=64 RM_B=32 RM_M=16 RM_STEPS=8 PAIRS=384
  PPO_P=128 PPO_T=128 PPO_B=64 PPO_M=16 PPO_STEPS=3 PPO_RANK=8 PROMPTS=256
  TEST_TIMEOUT=420 MEASURE_TIMEOUT=240 THREADS=0
else
  DTYPE=bf16
  MODEL_ARGS="--layers 2 --hidden 64 --intermediate 256 --heads 4 --kv-heads 2"
  GEN_TOKENS=16 GEN_REPEATS=2
  RM_P=32 RM_T=16 RM_B=8 RM_M=4 RM_STEPS=4 PAIRS=64
  PPO_P=32 PPO_T=16 PPO_B=8 PPO_M=4 PPO_STEPS=2 PPO_RANK=8 PROMPTS=32
  TEST_TIMEOUT=600 MEASURE_TIMEOUT=240 THREADS=1  # tiny tensors: one thread is fastest and steadiest
fi
PPO_EPOCHS=4 KL_COEFF=0.1
TEST_FILTER='Transformer.CachedDecodingEqualsFullForward:Transformer.LeftPaddingDoesNotChangeLogits'
TEST_FILTER+=':Lora.GradientsReachOnlyTheAdapter:*LogprobPaths.*:ParityLogits.TinyModelsAgainstTransformers'
TEST_FILTER+=':RewardTraining.LearnsASyntheticPreference:PolicyTraining.RewardRisesWhileKlStaysBounded'

case "$BUILD" in /*) BUILD_ABS=$BUILD ;; *) BUILD_ABS=$ROOT/$BUILD ;; esac
WORK=$BUILD_ABS/gpu-check
mkdir -p "$WORK" || exit 1
rm -rf "$WORK"/{rm,rm_gc,ppo,data} "$WORK"/*.log "$WORK"/*.json "$WORK"/phases.tsv
: > "$WORK/phases.tsv"
FAILED=0

# ---- helpers ----------------------------------------------------------------------------
GPU_INDEX=${CUDA_VISIBLE_DEVICES:-0}; GPU_INDEX=${GPU_INDEX%%,*}
HAVE_SMI=0
if [ "$MODE" = cuda ] && command -v nvidia-smi >/dev/null; then HAVE_SMI=1; fi
SAMPLER=""
# Samples the GPU's used memory (MiB, all processes) every 100 ms into WORK/mem.NAME.log.
start_sampler() {
  SAMPLER=""
  [ "$HAVE_SMI" = 1 ] || return 0
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i "$GPU_INDEX" -lms 100 \
    > "$WORK/mem.$1.log" 2>/dev/null &
  SAMPLER=$!
}
stop_sampler() {
  if [ -n "$SAMPLER" ]; then kill "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null; fi
  SAMPLER=""
}
T0=0
begin() { T0=$(date +%s.%N); printf '[check] %-10s ... ' "$1" >&2; start_sampler "$1"; }
# end NAME STATUS: records the phase's seconds and outcome.
end() {
  stop_sampler
  local s; s=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  printf '%s\t%s\t%s\n' "$1" "$s" "$2" >> "$WORK/phases.tsv"
  if [ "$2" = ok ]; then printf 'ok (%ss)\n' "$s" >&2; else printf '%s (%ss)\n' "$2" "$s" >&2; FAILED=1; fi
}
# run_logged NAME CMD...: runs CMD with its output in WORK/NAME.log, within MEASURE_TIMEOUT;
# on failure prints the log's tail.
run_logged() {
  local name=$1; shift
  timeout "$MEASURE_TIMEOUT" "$@" > "$WORK/$name.log" 2>&1
  local rc=$?
  if [ $rc != 0 ]; then
    echo >&2; echo "[check] $name failed (exit $rc; $( [ $rc = 124 ] && echo "over ${MEASURE_TIMEOUT}s" )): $WORK/$name.log" >&2
    tail -n 20 "$WORK/$name.log" >&2
  fi
  return $rc
}

# ---- the machine ------------------------------------------------------------------------
GPU_NAME=""
if [ "$MODE" = cuda ]; then
  if [ "$HAVE_SMI" = 1 ]; then GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader -i "$GPU_INDEX" | head -1); fi
  echo "[check] GPU: ${GPU_NAME:-unknown (no nvidia-smi)}" >&2
else
  echo "[check] CPU mode: tiny sizes, build in $BUILD/" >&2
fi

# ---- build ------------------------------------------------------------------------------
TARGETS="rlhf bench_generate bench_gpu_model rlhf_gpu_tests"
configure_cuda() {
  # The torch of python3 (a CUDA wheel), and for a Torch.cmake that takes the CUDA libraries
  # from RLHF_CUDA_DIR (scripts/setup --cuda's .deps/cuda), the same libraries from python3's
  # nvidia packages when .deps/cuda is absent (no network here), as links.
  local torch_dir site args=()
  torch_dir=$($PY -c 'import torch,os;print(os.path.dirname(torch.__file__))') || { echo "python3 has no torch" >&2; return 1; }
  args+=(-DRLHF_TORCH_DIR="$torch_dir")
  if grep -q RLHF_CUDA_DIR cmake/Torch.cmake && [ ! -e .deps/cuda/lib/libcudart.so.13 ]; then
    site=$(dirname "$torch_dir")
    local farm=$BUILD_ABS/python-cuda
    rm -rf "$farm"; mkdir -p "$farm/lib" "$farm/include"
    for d in "$site"/nvidia/*/; do
      for part in lib include; do [ -d "$d$part" ] && cp -as "$d$part/." "$farm/$part/" 2>/dev/null; done
    done
    args+=(-DRLHF_CUDA_DIR="$farm")
  fi
  cmake -S . -B "$BUILD" -G Ninja -DRLHF_CUDA=ON -DCMAKE_BUILD_TYPE=Release "${args[@]}"
}
build() {
  if [ "$MODE" = cuda ] && [ ! -f "$BUILD/CMakeCache.txt" ]; then configure_cuda || return 1; fi
  if [ "$MODE" = cpu ] && [ ! -f "$BUILD/CMakeCache.txt" ]; then cmake -S . -B "$BUILD" -G Ninja || return 1; fi
  # shellcheck disable=SC2086
  cmake --build "$BUILD" -j "$JOBS" --target $TARGETS
}
if [ "$SKIP_BUILD" = 0 ]; then
  begin build
  if [ -n "${RLHF_BUILD_LOCK:-}" ]; then
    ( t=$(date +%s); flock 9; echo "[check] waited $(( $(date +%s) - t ))s for $RLHF_BUILD_LOCK"; build ) \
      9>"$RLHF_BUILD_LOCK" > "$WORK/build.log" 2>&1
  else
    build > "$WORK/build.log" 2>&1
  fi
  rc=$?
  if [ $rc != 0 ]; then
    end build failed
    echo "[check] the build failed: $WORK/build.log" >&2; tail -n 30 "$WORK/build.log" >&2
    exit 1
  fi
  end build ok
  grep '^\[check\] waited' "$WORK/build.log" >&2
fi
for t in rlhf bench/bench_generate bench/gpu/bench_gpu_model bench/gpu/rlhf_gpu_tests; do
  [ -x "$BUILD/$t" ] || { echo "[check] $BUILD/$t is missing: build it (without --skip-build)" >&2; exit 1; }
done
RLHF=$BUILD_ABS/rlhf

# ---- tests on the device ----------------------------------------------------------------
if [ "$SKIP_TESTS" = 0 ]; then
  begin tests
  RLHF_TEST_DEVICE=$MODE RLHF_TEST_PYTHON=$PY timeout "$TEST_TIMEOUT" "$BUILD/bench/gpu/rlhf_gpu_tests" \
    --gtest_filter="$TEST_FILTER" --gtest_output="json:$WORK/tests.json" > "$WORK/tests.log" 2>&1
  rc=$?
  if [ $rc = 0 ]; then end tests ok; else
    end tests failed
    grep -E '^\[  FAILED  \]|Failure|timed out' "$WORK/tests.log" | head -20 >&2
    [ $rc = 124 ] && echo "[check] the tests ran past ${TEST_TIMEOUT}s: $WORK/tests.log" >&2
  fi
fi

# ---- the model and its data -------------------------------------------------------------
begin model
# shellcheck disable=SC2086
if run_logged model "$BUILD/bench/gpu/bench_gpu_model" --out "$WORK/data" $MODEL_ARGS --dtype "$DTYPE" \
     --pairs "$PAIRS" --prompts "$PROMPTS" --prompt-bytes "$RM_P" --completion-bytes "$RM_T"; then
  tail -n 1 "$WORK/model.log" > "$WORK/model.json"
  end model ok
else
  end model failed
  echo "[check] no model: nothing to measure" >&2; exit 1
fi
MODEL=$WORK/data/model

# ---- generation -------------------------------------------------------------------------
for b in 1 64; do
  begin "gen_b$b"
  if run_logged "gen_b$b" "$BUILD/bench/bench_generate" --model "$MODEL" --dtype "$DTYPE" --device "$MODE" \
       --batch "$b" --new-tokens "$GEN_TOKENS" --repeats "$GEN_REPEATS" --threads "$THREADS"; then
    grep '^{' "$WORK/gen_b$b.log" | tail -n 1 > "$WORK/gen_b$b.json"; end "gen_b$b" ok
  else end "gen_b$b" failed; fi
done

# ---- reward model (and again with gradient checkpointing, when the program has it) -------
train_reward() {  # OUTPUT_NAME [FLAGS...]
  local name=$1; shift
  run_logged "$name" "$RLHF" train-reward --preference-dataset "$WORK/data/preferences.jsonl" --model "$MODEL" \
    --output "$WORK/$name" --device "$MODE" --dtype "$DTYPE" --reward-model-train-steps "$RM_STEPS" \
    --batch-size "$RM_B" --micro-batch-size "$RM_M" --prompt-sequence-length "$RM_P" \
    --target-sequence-length "$RM_T" --validation-fraction 0.05 --max-validation-pairs "$RM_B" \
    --validation-every 0 --centering-pairs "$RM_B" --checkpoint-every 1000 --threads "$THREADS" --no-progress "$@"
}
begin reward
if train_reward rm; then end reward ok; else end reward failed; fi
if [[ "$("$RLHF" train-reward --help 2>/dev/null)" == *--gradient-checkpointing* ]]; then
  begin reward_gc
  if train_reward rm_gc --gradient-checkpointing; then end reward_gc ok; else end reward_gc failed; fi
fi

# ---- one PPO step -----------------------------------------------------------------------
begin ppo
if [ -f "$WORK/rm/reward_model.json" ] &&
   run_logged ppo "$RLHF" train-policy --prompt-dataset "$WORK/data/prompts.jsonl" --reward-model "$WORK/rm" \
     --output "$WORK/ppo" --device "$MODE" --dtype "$DTYPE" --reinforcement-learning-train-steps "$PPO_STEPS" \
     --batch-size "$PPO_B" --micro-batch-size "$PPO_M" --prompt-sequence-length "$PPO_P" \
     --target-sequence-length "$PPO_T" --lora-rank "$PPO_RANK" --ppo-epochs "$PPO_EPOCHS" --kl-coeff "$KL_COEFF" \
     --no-eos-penalty --checkpoint-every 1000 --threads "$THREADS" --no-progress; then
  end ppo ok
else end ppo failed; fi

# ---- summary ----------------------------------------------------------------------------
[ "$KEEP_MODEL" = 1 ] || rm -f "$MODEL/model.safetensors"
mkdir -p "$(dirname "$OUT_FILE")"
$PY bench/gpu/summarize.py --work "$WORK" --out "$OUT_FILE" --mode "$MODE" --gpu-name "$GPU_NAME" \
  --build-dir "$BUILD" --dtype "$DTYPE" --test-filter "$TEST_FILTER" --ccache "$(command -v ccache)" \
  --commit "$(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD 2>/dev/null || echo +changes)" \
  --sizes "gen_new_tokens=$GEN_TOKENS rm_p=$RM_P rm_t=$RM_T rm_b=$RM_B rm_m=$RM_M rm_steps=$RM_STEPS ppo_p=$PPO_P ppo_t=$PPO_T ppo_b=$PPO_B ppo_m=$PPO_M ppo_steps=$PPO_STEPS ppo_epochs=$PPO_EPOCHS ppo_lora_rank=$PPO_RANK kl_coeff=$KL_COEFF" \
  || FAILED=1
exit $FAILED
