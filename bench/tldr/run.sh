#!/usr/bin/env bash
# TL;DR summarization with the default model, end to end with rlhf's own commands:
#   prepare  prompts from the TL;DR test split: the first TRAIN_PROMPTS for labels and RL, the last
#            HELDOUT held out (prepare.py)
#   labels   rlhf label: two sampled candidates per training prompt, labeled by the rule max-words=50
#   reward   rlhf train-reward on the labels (VALIDATION_FRACTION of the pairs held out)
#   before   rlhf infer, greedy, the base model on the held-out prompts
#   policy   rlhf train-policy (PPO) on the training prompts against the reward model
#   after    rlhf infer, greedy, the tuned policy on the held-out prompts
#   sxs      rlhf sxs before vs after, both scored by the reward model: OUT/sxs/sxs.html
#   grpo     rlhf train-policy --method grpo --reward-rule max-words=50 on the same training
#            prompts, no reward model: the rule scores each group of completions (OUT/grpo)
#   grpo-after  rlhf infer, greedy, the GRPO policy on the held-out prompts
#   report   report.py: RESULTS.md (figures before -> after, times, commands)
# Each stage is skipped when its output exists (delete it to redo the stage); a stopped reward or
# RL stage resumes from its last checkpoint. Every command run is appended to OUT/commands.txt,
# each stage's wall time to OUT/timings.txt.
#   bench/tldr/run.sh            everything
#   bench/tldr/run.sh reward     stop after that stage (any stage name above)
#   SMOKE=1 bench/tldr/run.sh    16 training prompts, 8 held out, 2 RL steps, OUT=/tmp/tldr-smoke
# Environment: OUT (default /tmp/tldr), RLHF (the binary), PYTHON (default .venv/bin/python),
# SHARED (default ../shared from the repository: the data), THREADS (default 2), RESULTS (the
# page written; default bench/tldr/RESULTS.md, OUT/RESULTS.md with SMOKE=1), and the sizes below.
#
# Time: see RESULTS.md (each stage's wall and CPU seconds of the last full run) and README.md.
# The update dominates RL: the defaults use the shared value model (one forward/backward a PPO
# epoch) and one micro-batch a step (no forward just for the old log-probs).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

# ---- sizes and settings (environment overrides) ----
TRAIN_PROMPTS="${TRAIN_PROMPTS:-400}"   # first rows: labels and RL
HELDOUT="${HELDOUT:-100}"               # last rows: before/after
PROMPT_LEN="${PROMPT_LEN:-256}"         # prompt tokens kept (the last ones)
TARGET_LEN="${TARGET_LEN:-96}"          # new tokens at most (candidates, rollouts, before/after)
TEMPERATURES="${TEMPERATURES:-0.7,1.0}" # the two candidates of a labeled pair
LABEL_PROMPTS="${LABEL_PROMPTS:-256}"   # training prompts labeled (the first ones; 0 = all)
LABEL_BATCH="${LABEL_BATCH:-16}"        # prompts sampled together by label
INFER_BATCH="${INFER_BATCH:-16}"        # prompts generated together by infer
RM_EPOCHS="${RM_EPOCHS:-2}"
RM_BATCH="${RM_BATCH:-16}"
RM_MICRO_BATCH="${RM_MICRO_BATCH:-4}"
RM_LR_MULT="${RM_LR_MULT:-20}"          # x 1e-4
VALIDATION_FRACTION="${VALIDATION_FRACTION:-0.1}"
RL_STEPS="${RL_STEPS:-16}"              # PPO steps
RL_BATCH="${RL_BATCH:-8}"               # rollouts (prompts) per PPO step
# Empty: the trainer's default (train-policy --help); set to pass the flag.
RL_MICRO_BATCH="${RL_MICRO_BATCH:-$RL_BATCH}"  # = the batch: the first update's forward gives the old log-probs
VALUE_MODEL="${VALUE_MODEL:-shared}"    # --value-model: shared halves the update's forward/backward passes
PPO_EPOCHS="${PPO_EPOCHS:-}"            # --ppo-epochs
RL_LR_MULT="${RL_LR_MULT:-10}"          # --reinforcement-learning-rate-multiplier (x 1e-4; LoRA rank 1 needs more than 1e-4 in 16 steps)
KL_COEFF="${KL_COEFF:-}"                # --kl-coeff
EOS_PENALTY="${EOS_PENALTY:-}"          # --missing-eos-penalty
EOS_PENALTY_MODE="${EOS_PENALTY_MODE:-}"  # --eos-penalty-mode (replace, subtract)
# --reward-normalization-samples: untuned completions scored before training (trainer default 64:
# 6 min here; 32 estimate the mean and spread well enough for 7 steps)
REWARD_NORM_SAMPLES="${REWARD_NORM_SAMPLES:-32}"
RL_CHECKPOINT_EVERY="${RL_CHECKPOINT_EVERY:-2}"
# GRPO (stage grpo): GRPO_STEPS steps of GRPO_BATCH prompts x GRPO_GENERATIONS completions each,
# rewarded by the rule GRPO_RULE (no reward model; train-policy's default EOS penalty on top: a
# completion cut at the length limit loses 1). One optimizer step a batch (GRPO's one iteration),
# so fewer updates than PPO's 4 epochs: a higher learning rate. About 30 s a step on one thread of
# the 2-core VM with DTYPE=auto (bf16): some 17 minutes with the greedy pass after it. Empty: the
# trainer's default (GRPO's kl_coeff 0, loss dapo, scaling by the group's std, temperature 0.7).
GRPO_RULE="${GRPO_RULE:-max-words=50}"
GRPO_STEPS="${GRPO_STEPS:-30}"
GRPO_BATCH="${GRPO_BATCH:-4}"                 # prompts per step
GRPO_GENERATIONS="${GRPO_GENERATIONS:-4}"     # completions per prompt (the group)
GRPO_MICRO_BATCH="${GRPO_MICRO_BATCH:-16}"    # completions per forward/backward (the whole batch)
GRPO_LR_MULT="${GRPO_LR_MULT:-20}"            # x 1e-4
GRPO_TEMPERATURE="${GRPO_TEMPERATURE:-}"      # --temperature (rollouts)
GRPO_KL_COEFF="${GRPO_KL_COEFF:-}"            # --kl-coeff
GRPO_ITERATIONS="${GRPO_ITERATIONS:-}"        # --num-iterations
if [[ "${SMOKE:-0}" == 1 ]]; then
  TRAIN_PROMPTS=16 HELDOUT=8 LABEL_PROMPTS=0 RM_EPOCHS=2 RL_STEPS=2 RL_BATCH=4 REWARD_NORM_SAMPLES=8
  GRPO_STEPS=2 GRPO_BATCH=2 GRPO_GENERATIONS=2 GRPO_MICRO_BATCH=4
  OUT="${OUT:-/tmp/tldr-smoke}"
fi
OUT="${OUT:-/tmp/tldr}"
RESULTS="${RESULTS:-$([[ "${SMOKE:-0}" == 1 ]] && echo "$OUT/RESULTS.md" || echo "$here/RESULTS.md")}"
THREADS="${THREADS:-2}"
# Every command's --dtype, the same before and after: auto is bf16 on CPUs with AVX512-BF16 or
# AMX (about twice as fast as fp32 there), fp32 elsewhere.
DTYPE="${DTYPE:-auto}"
SHARED="${SHARED:-$root/../shared}"
DATA="$SHARED/data/external/tldr-sft-dove/test.jsonl"
PYTHON="${PYTHON:-$root/.venv/bin/python}"
if [[ -z "${RLHF:-}" ]]; then
  RLHF=build/rlhf
  [[ -x "$RLHF" ]] || RLHF=build/apps/rlhf/rlhf
fi
INSTRUCTION="Summarize in less than 50 words."
STOP="${1:-all}"

if [[ ! -d "$SHARED" ]]; then echo "$SHARED: absent (the shared data folder; set SHARED)" >&2; exit 2; fi
if [[ ! -f "$DATA" ]]; then echo "$DATA: absent (the TL;DR test split)" >&2; exit 2; fi
[[ -x "$RLHF" ]] || { echo "$RLHF: not built" >&2; exit 1; }
mkdir -p "$OUT"

cpu_s() {  # CPU seconds (user + system) of the finished child processes so far
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%d", ($14 + $15) / hz }' "/proc/$$/stat"
}
stage() {  # name, output that marks it done
  if [[ -e "$2" ]]; then echo "== $1: $2 exists, skipped"; return 1; fi
  echo "== $1"; SECONDS=0; CPU0=$(cpu_s)
}
took() {  # OUT/timings.txt: stage, wall seconds, CPU seconds of its commands
  local cpu=$(( $(cpu_s) - CPU0 ))
  printf '%s\t%s\t%s\n' "$1" "$SECONDS" "$cpu" >> "$OUT/timings.txt"; echo "== $1: ${SECONDS} s (CPU ${cpu} s)"
}
done_if() { if [[ "$STOP" == "$1" ]]; then exit 0; fi; }
run() {  # logs the command line to OUT/commands.txt, then runs it
  local a line=""
  for a in "$@"; do
    if [[ "$a" =~ ^[A-Za-z0-9_./=:,+@%-]+$ ]]; then line+=" $a"; else line+=" '${a//\'/\'\\\'\'}'"; fi
  done
  echo "${line# }" >> "$OUT/commands.txt"
  "$@"
}
opt() {  # --flag value, only when value is set
  if [[ -n "$2" ]]; then printf '%s\n%s\n' "$1" "$2"; fi
}

FORMAT=(--instruction "$INSTRUCTION" --prompt-format chat --prompt-sequence-length "$PROMPT_LEN" --dtype "$DTYPE")

if stage prepare "$OUT/prompts_heldout.jsonl"; then
  run "$PYTHON" "$here/prepare.py" --data "$DATA" --out "$OUT" --train "$TRAIN_PROMPTS" --heldout "$HELDOUT"
  took prepare
fi
done_if prepare

if stage labels "$OUT/preference.jsonl"; then
  run "$RLHF" label --prompt-dataset "$OUT/prompts_train.jsonl" --rule max-words=50 "${FORMAT[@]}" \
    --max-new-tokens "$TARGET_LEN" --temperatures "$TEMPERATURES" --batch-size "$LABEL_BATCH" \
    --max-rows "$LABEL_PROMPTS" --threads "$THREADS" --quiet --output "$OUT/preference.jsonl" 2>&1 | tee -a "$OUT/labels.log"
  took labels
fi
done_if labels

if stage reward "$OUT/rm/reward_model.json"; then
  resume=()
  if [[ -d "$OUT/rm/checkpoints" ]]; then resume=(--resume); else rm -rf "$OUT/rm"; fi  # a stopped run goes on
  run "$RLHF" train-reward --preference-dataset "$OUT/preference.jsonl" "${FORMAT[@]}" \
    --target-sequence-length "$TARGET_LEN" --batch-size "$RM_BATCH" --micro-batch-size "$RM_MICRO_BATCH" \
    --reward-model-epochs "$RM_EPOCHS" --reward-model-learning-rate-multiplier "$RM_LR_MULT" \
    --validation-fraction "$VALIDATION_FRACTION" --validation-every 10 --checkpoint-every 5 \
    --threads "$THREADS" --no-progress --output "$OUT/rm" "${resume[@]}" 2>&1 | tee -a "$OUT/rm.log"
  took reward
fi
done_if reward

if stage before "$OUT/before.jsonl"; then
  run "$RLHF" infer --input "$OUT/prompts_heldout.jsonl" "${FORMAT[@]}" --max-new-tokens "$TARGET_LEN" \
    --temperature 0 --batch-size "$INFER_BATCH" --threads "$THREADS" --no-progress \
    --output "$OUT/before.jsonl" 2>&1 | tee -a "$OUT/before.log"
  took before
fi
done_if before

if stage policy "$OUT/policy/policy.json"; then
  resume=()
  if [[ -d "$OUT/policy/checkpoints" ]]; then resume=(--resume); else rm -rf "$OUT/policy"; fi
  mapfile -t rl_opts < <(opt --micro-batch-size "$RL_MICRO_BATCH"; opt --ppo-epochs "$PPO_EPOCHS"
                         opt --reinforcement-learning-rate-multiplier "$RL_LR_MULT"
                         opt --kl-coeff "$KL_COEFF"; opt --missing-eos-penalty "$EOS_PENALTY"
                         opt --eos-penalty-mode "$EOS_PENALTY_MODE"; opt --reward-normalization-samples "$REWARD_NORM_SAMPLES"
                         opt --value-model "$VALUE_MODEL")
  run "$RLHF" train-policy --prompt-dataset "$OUT/prompts_train.jsonl" --reward-model "$OUT/rm" "${FORMAT[@]}" \
    --target-sequence-length "$TARGET_LEN" --batch-size "$RL_BATCH" --reinforcement-learning-train-steps "$RL_STEPS" \
    "${rl_opts[@]}" --checkpoint-every "$RL_CHECKPOINT_EVERY" --threads "$THREADS" --no-progress \
    --output "$OUT/policy" "${resume[@]}" 2>&1 | tee -a "$OUT/policy.log"
  took policy
fi
done_if policy

if stage after "$OUT/after.jsonl"; then
  run "$RLHF" infer --adapter "$OUT/policy" --input "$OUT/prompts_heldout.jsonl" "${FORMAT[@]}" \
    --max-new-tokens "$TARGET_LEN" --temperature 0 --batch-size "$INFER_BATCH" --threads "$THREADS" --no-progress \
    --output "$OUT/after.jsonl" 2>&1 | tee -a "$OUT/after.log"
  took after
fi
done_if after

if stage sxs "$OUT/sxs/sxs.html"; then
  run "$RLHF" sxs "$OUT/before.jsonl" "$OUT/after.jsonl" --reward-model "$OUT/rm" --max-words 50 --dtype "$DTYPE" \
    --label-a "base model (greedy)" --label-b "RL policy (greedy)" --threads "$THREADS" --no-progress \
    --output "$OUT/sxs" 2>&1 | tee -a "$OUT/sxs.log"
  took sxs
fi
done_if sxs

if stage grpo "$OUT/grpo/policy.json"; then
  resume=()
  if [[ -d "$OUT/grpo/checkpoints" ]]; then resume=(--resume); else rm -rf "$OUT/grpo"; fi
  mapfile -t grpo_opts < <(opt --temperature "$GRPO_TEMPERATURE"; opt --kl-coeff "$GRPO_KL_COEFF"
                           opt --num-iterations "$GRPO_ITERATIONS")
  run "$RLHF" train-policy --method grpo --reward-rule "$GRPO_RULE" --prompt-dataset "$OUT/prompts_train.jsonl" \
    "${FORMAT[@]}" --target-sequence-length "$TARGET_LEN" --batch-size "$GRPO_BATCH" \
    --num-generations "$GRPO_GENERATIONS" --micro-batch-size "$GRPO_MICRO_BATCH" \
    --reinforcement-learning-train-steps "$GRPO_STEPS" --reinforcement-learning-rate-multiplier "$GRPO_LR_MULT" \
    "${grpo_opts[@]}" --checkpoint-every "$RL_CHECKPOINT_EVERY" --threads "$THREADS" --no-progress \
    --output "$OUT/grpo" "${resume[@]}" 2>&1 | tee -a "$OUT/grpo.log"
  took grpo
fi
done_if grpo

if stage grpo-after "$OUT/grpo_after.jsonl"; then
  run "$RLHF" infer --adapter "$OUT/grpo" --input "$OUT/prompts_heldout.jsonl" "${FORMAT[@]}" \
    --max-new-tokens "$TARGET_LEN" --temperature 0 --batch-size "$INFER_BATCH" --threads "$THREADS" --no-progress \
    --output "$OUT/grpo_after.jsonl" 2>&1 | tee -a "$OUT/grpo_after.log"
  took grpo-after
fi
done_if grpo-after

"$PYTHON" "$here/report.py" --out "$OUT" --results "$RESULTS"
