#!/usr/bin/env bash
# TL;DR summarization with the default model, end to end: prompts -> candidate pairs ->
# preference labels by rule (<= 50 words, else shorter) -> reward model -> RL -> before/after.
# Each stage is skipped when its output exists (delete the file or folder to redo it).
#   bench/tldr/run.sh            everything
#   bench/tldr/run.sh reward     stop after the reward model (also: prepare, candidates, labels, policy)
# Environment: OUT (default /tmp/tldr), RLHF (the binary), PYTHON (with torch, transformers,
# gguf), THREADS (CPU threads for each stage; default 2), FORMAT (chat or raw; default chat),
# LIMIT (training prompts used for candidates; 0 = all 400).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
export TLDR_OUT="${OUT:-/tmp/tldr}"
OUT="$TLDR_OUT"
if [[ -z "${RLHF:-}" ]]; then
  RLHF=build/apps/rlhf/rlhf
  [[ -x "$RLHF" ]] || RLHF=build/rlhf
fi
PYTHON="${PYTHON:-$root/.venv/bin/python}"
export TLDR_THREADS="${THREADS:-2}"
FORMAT="${FORMAT:-chat}"
LIMIT="${LIMIT:-0}"
STOP="${1:-all}"
INSTRUCTION="Summarize in less than 50 words."
COMMON=(--instruction "$INSTRUCTION" --prompt-format "$FORMAT" --prompt-sequence-length 256
        --target-sequence-length 96 --threads "$TLDR_THREADS")
mkdir -p "$OUT"

stage() {  # name, output that marks it done
  if [[ -e "$2" ]]; then echo "== $1: $2 exists, skipped"; return 1; fi
  echo "== $1"; SECONDS=0
}
took() { echo "== $1: ${SECONDS} s" | tee -a "$OUT/timings.txt"; }
done_if() { [[ "$STOP" == "$1" ]] && exit 0 || true; }

if stage prepare "$OUT/prompts_heldout.jsonl"; then
  "$PYTHON" "$here/prepare.py" --out "$OUT"; took prepare
fi
done_if prepare

filter() { { grep -v -e Warning -e 'it/s' -e deprecated -e forward_call || true; }; }
if stage candidates "$OUT/candidates.jsonl"; then
  "$PYTHON" "$here/candidates.py" --format "$FORMAT" --limit "$LIMIT" \
    --prompts "$OUT/prompts_train.jsonl" --out "$OUT/candidates.jsonl" 2>&1 | filter
  took candidates
fi
if stage candidates-heldout "$OUT/candidates_heldout.jsonl"; then
  "$PYTHON" "$here/candidates.py" --format "$FORMAT" \
    --prompts "$OUT/prompts_heldout.jsonl" --out "$OUT/candidates_heldout.jsonl" 2>&1 | filter
  took candidates-heldout
fi
done_if candidates

if stage labels "$OUT/preference_train.jsonl"; then
  "$PYTHON" "$here/labels.py" --candidates "$OUT/candidates.jsonl" --out "$OUT/preference_train.jsonl"; took labels
fi
if stage labels-heldout "$OUT/preference_heldout.jsonl"; then
  "$PYTHON" "$here/labels.py" --candidates "$OUT/candidates_heldout.jsonl" --out "$OUT/preference_heldout.jsonl"
  took labels-heldout
fi
done_if labels

[[ -x "$RLHF" ]] || { echo "$RLHF: not built" >&2; exit 1; }

if stage reward "$OUT/rm/reward_model.json"; then
  resume=()
  if [[ -d "$OUT/rm/checkpoints" ]]; then resume=(--resume); else rm -rf "$OUT/rm"; fi  # a stopped run goes on
  "$RLHF" train-reward --preference-dataset "$OUT/preference_train.jsonl" "${COMMON[@]}" \
    --batch-size 16 --micro-batch-size 4 --reward-model-epochs 2 --reward-model-learning-rate-multiplier 20 \
    --eval-dataset "$OUT/preference_heldout.jsonl" --validation-every 25 --checkpoint-every 5 --no-progress \
    --output "$OUT/rm" "${resume[@]}" 2>&1 | tee -a "$OUT/rm.log"
  took reward
fi
if stage reward-check "$OUT/rm_check.txt"; then
  "$PYTHON" "$here/rm_check.py" write "$OUT/candidates_heldout.jsonl" "$OUT/score_input_heldout.jsonl"
  "$RLHF" score --reward-model "$OUT/rm" --input "$OUT/score_input_heldout.jsonl" \
    --output "$OUT/scored_heldout.jsonl" --threads "$TLDR_THREADS"
  "$PYTHON" "$here/rm_check.py" read "$OUT/scored_heldout.jsonl" | tee "$OUT/rm_check.txt.tmp"
  mv "$OUT/rm_check.txt.tmp" "$OUT/rm_check.txt"
  took reward-check
fi
done_if reward

if stage policy "$OUT/policy/policy.json"; then
  resume=()
  if [[ -d "$OUT/policy/checkpoints" ]]; then resume=(--resume); else rm -rf "$OUT/policy"; fi
  "$RLHF" train-policy --prompt-dataset "$OUT/prompts_train.jsonl" --eval-dataset "$OUT/prompts_heldout.jsonl" \
    --reward-model "$OUT/rm" "${COMMON[@]}" --batch-size 16 --reinforcement-learning-train-steps 20 \
    --no-progress --output "$OUT/policy" "${resume[@]}" 2>&1 | tee -a "$OUT/policy.log"
  took policy
fi
done_if policy

"$PYTHON" "$here/report.py" "$OUT/policy"
