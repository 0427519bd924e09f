#!/usr/bin/env python3
"""GPU memory of the reward-model and PPO stages, computed from a model's shape.

What `rlhf train-reward` and `rlhf train-policy` hold on one GPU with bf16 weights (see
docs/gpu.md, "Memory plan"): the base once for every role (policy, reference, value and reward
model are adapters on it), the trainable adapters and heads in fp32 with their gradients and
AdamW moments, the KV cache of a rollout batch, and the activations one training micro-batch
saves for its backward pass: every layer's (no checkpointing) or only each layer's input plus
one layer's (gradient_checkpointing). PPO's update keeps the policy's and the value model's
graphs alive together (one loss), so twice a micro-batch's activations; it computes log-probs
on the response tokens only. The reward model packs chosen and rejected after one prompt.

Saved activations of a decoder layer, bf16, per token: the residual input, the normed input,
q/k/v, the attention output, the MLP's norm input and normed input, gate, up and their product:
2 * (6h + 2 kv + 3 I) bytes. Nothing is measured here; the numbers are estimates to plan with
(allow ~10 % for the allocator). Usage: bench/memory_plan.py [--gpu-gb 80] [--batch 64]
"""
import argparse

MODELS = {  # name: layers, hidden, intermediate, heads, kv heads, vocab, parameters
    "Llama-3.2-1B": (16, 2048, 8192, 32, 8, 128256, 1.24e9),
    "Llama-3.2-3B": (28, 3072, 8192, 24, 8, 128256, 3.21e9),
    "Llama-2-7B": (32, 4096, 11008, 32, 32, 32000, 6.74e9),
    "Llama-3.1-8B": (32, 4096, 14336, 32, 8, 128256, 8.03e9),
}
GB = 1e9
OVERHEAD = 2 * GB  # CUDA context, cuBLAS workspaces, allocator slack


def lora_params(layers, h, kv, rank):  # q_proj and v_proj, as the defaults
    return layers * rank * ((h + h) + (h + kv))


def plan(name, prompt, target, batch, gpu):
    L, h, inter, heads, kv_heads, vocab, n = MODELS[name]
    kv = h // heads * kv_heads
    base = 2 * n
    trainable = 16 * (lora_params(L, h, kv, 1) + 2 * lora_params(L, h, kv, 4) + 2 * (h + 1))
    layer_tok = 2 * (6 * h + 2 * kv + 3 * inter)  # saved bytes per token per layer
    kv_cache = 2 * L * kv * 2 * batch * (prompt + target)

    def activations(tokens, ckpt):
        return tokens * (L * 2 * h + layer_tok) if ckpt else tokens * L * layer_tok

    def rm(m, ckpt):
        return base + trainable + OVERHEAD + activations(m * (prompt + 2 * target), ckpt)

    def ppo(m, ckpt):
        logits = m * target * vocab * 10  # bf16 logits, fp32 log-softmax and its gradient
        train = 2 * activations(m * (prompt + target), ckpt) + logits
        return base + trainable + OVERHEAD + max(kv_cache, train)

    def largest(f, ckpt):
        best = 0
        for m in (1, 2, 4, 8, 16, 32, 64):
            if m <= batch and f(m, ckpt) <= gpu:
                best = m
        return best

    return {
        "base": base, "kv": kv_cache,
        "rm": {c: largest(rm, c) for c in (False, True)},
        "ppo": {c: largest(ppo, c) for c in (False, True)},
        "ppo_bytes": {c: ppo(max(1, largest(ppo, c)), c) for c in (False, True)},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu-gb", type=float, default=80)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--target", type=int, default=64)
    a = ap.parse_args()
    gpu = a.gpu_gb * GB
    print(f"# one {a.gpu_gb:g} GB GPU, bf16, prompt {a.prompt} + response {a.target}, batch {a.batch}: "
          "the largest micro-batch (power of 2) that fits; 0 = none")
    print(f"{'model':<14} {'base GB':>8} {'KV GB':>7} {'RM mb':>6} {'RM mb ckpt':>11} {'PPO mb':>7} "
          f"{'PPO mb ckpt':>12}")
    for name in MODELS:
        p = plan(name, a.prompt, a.target, a.batch, gpu)
        print(f"{name:<14} {p['base'] / GB:>8.1f} {p['kv'] / GB:>7.1f} {p['rm'][False]:>6} {p['rm'][True]:>11} "
              f"{p['ppo'][False]:>7} {p['ppo'][True]:>12}")


if __name__ == "__main__":
    main()
