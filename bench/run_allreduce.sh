#!/usr/bin/env bash
# The cost of the gradient all-reduce of one data-parallel training step, 2 local ranks on this
# machine (Gloo over the loopback): ours (`rlhf --nproc-per-node 2 dist-check`, c10d from C++)
# and PyTorch's (torch.distributed.all_reduce under torchrun, from .venv), the same float32
# sizes, 50 warm-up, then the median of ITER (200) all-reduces. The sizes are what LoRA training
# reduces at each optimizer update, with the default settings (reward adapter rank 4; policy
# rank 1, the value model taking the reward model's adapter settings; q_proj/v_proj):
#   default model (SmolLM2-135M: 30 layers, q 576->576, v 576->192): a reward-model step (LoRA
#     r4 + a 577-float head) and a PPO update (policy r1 + value r4 + the value head);
#   a 1B-shaped model (Llama-3.2-1B: 16 layers, q 2048->2048, v 2048->512): a PPO update with the
#     defaults and one with a policy of rank 8.
# A PPO step makes ppo_epochs x num_mini_batches updates (4 by default).
# Prints, per size: bytes, ours (ms), PyTorch's (ms) and ours/theirs as a ratio.
# Usage: bench/run_allreduce.sh [--build DIR]   (needs scripts/setup --dev for the peer)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build
[ "${1:-}" = "--build" ] && BUILD=$2
ITER=${ITER:-200}
lora() {  # layers, hidden, kv dim, rank -> float32 bytes of the q/v LoRA gradients
  echo $(( $1 * $4 * ( (2 * $2) + ($2 + $3) ) * 4 ))
}
declare -a NAMES=("default model, reward step (r4 + head)" "default model, PPO update (r1+r4+head)"
                  "1B-shaped, PPO update (r1+r4+head)" "1B-shaped, PPO update (r8+r4+head)")
declare -a BYTES=($(( $(lora 30 576 192 4) + 577 * 4 )) $(( $(lora 30 576 192 1) + $(lora 30 576 192 4) + 577 * 4 ))
                  $(( $(lora 16 2048 512 1) + $(lora 16 2048 512 4) + 2049 * 4 ))
                  $(( $(lora 16 2048 512 8) + $(lora 16 2048 512 4) + 2049 * 4 )))

# Both sides time every size in one job, in the same order.
mbs=()
for b in "${BYTES[@]}"; do mbs+=("$(python3 -c "print($b / 1e6)")"); done
mapfile -t ours < <("$BUILD/rlhf" --nproc-per-node 2 dist-check --megabytes "${mbs[@]}" --iterations "$ITER" 2>&1 |
                    grep '^\[rank 0\]' | sed -E 's/.* in ([0-9.]+) ms.*/\1/')
sizes=$(IFS=,; echo "${BYTES[*]}")
mapfile -t peer < <(.venv/bin/torchrun --nproc-per-node 2 --master-port 29671 bench/allreduce_peer.py "$sizes" "$ITER" 2>/dev/null |
                    awk '$1 == "peer" {print $3}')
printf '%-42s %12s %10s %12s %8s\n' "gradients" "bytes" "ours ms" "pytorch ms" "ratio"
for i in "${!BYTES[@]}"; do
  printf '%-42s %12s %10s %12s %8s\n' "${NAMES[$i]}" "${BYTES[$i]}" "${ours[$i]}" "${peer[$i]:-?}" \
    "$(python3 -c "print(f'{${ours[$i]} / ${peer[$i]:-0}:.2f}x' if ${peer[$i]:-0} else '?')")"
done
