"""Expected values of the GRPO and RLOO arithmetic, computed with plain NumPy loops.

Writes tests/data/grpo_expected.json (inputs and outputs) which tests/model/test_grpo.cpp
checks rlhf::grpo against. Semantics: TRL 1.16's GRPOTrainer (_generate_and_score_completions,
_compute_loss) and RLOOTrainer. Run: .venv/bin/python tests/parity/grpo_expected.py
"""
import json
import math
import os

import numpy as np

rng = np.random.default_rng(4321)
P, G, T = 2, 4, 5           # prompts, completions per prompt, tokens
N = P * G
lengths = [5, 3, 1, 4, 5, 2, 5, 3]
mask = np.array([[1.0 if t < n else 0.0 for t in range(T)] for n in lengths])
logp = np.round(rng.normal(-2.0, 0.7, (N, T)), 4)
old_logp = np.round(logp + rng.normal(0.0, 0.2, (N, T)), 4)
ref_logp = np.round(old_logp + rng.normal(0.0, 0.3, (N, T)), 4)
rewards = np.round(rng.normal(0.5, 1.0, N), 4)
rewards[4:8] = 0.75         # a group with one reward: std 0
eps_low, eps_high, beta = 0.2, 0.28, 0.04
max_length = 6


def std_unbiased(xs):
    xs = list(xs)
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


advantages, std_zero = {}, {}
for scale in ["group", "batch", "none"]:
    adv, zero = [], []
    for i in range(N):
        g = i // G
        grp = rewards[g * G:(g + 1) * G]
        mean = sum(grp) / G
        s = std_unbiased(rewards) if scale == "batch" else std_unbiased(grp)
        a = rewards[i] - mean
        if scale != "none":
            a = a / (s + 1e-4)
        adv.append(a)
        zero.append(bool(abs(s) <= 1e-8))
    advantages[scale] = adv
    std_zero[scale] = zero

A = advantages["group"]
token_loss = np.zeros((N, T))
clipped = np.zeros((N, T))
k3 = np.zeros((N, T))
for i in range(N):
    for t in range(T):
        if mask[i, t] == 0:
            continue
        ratio = math.exp(logp[i, t] - old_logp[i, t])
        c = min(max(ratio, 1 - eps_low), 1 + eps_high)
        l = -min(ratio * A[i], c * A[i])
        d = ref_logp[i, t] - logp[i, t]
        k3[i, t] = math.exp(d) - d - 1
        token_loss[i, t] = l + beta * k3[i, t]
        clipped[i, t] = 1.0 if (ratio < 1 - eps_low and A[i] < 0) or (ratio > 1 + eps_high and A[i] > 0) else 0.0
tokens = mask.sum()
losses = {
    "grpo": sum(token_loss[i].sum() / mask[i].sum() for i in range(N)) / N,
    "dapo": token_loss.sum() / tokens,
    "dr_grpo": token_loss.sum() / (N * max_length),
}
clipfrac = clipped.sum() / tokens
kl_k3 = k3.sum() / tokens

# RLOO: rewards with beta · KL (k1 of the sampling policy, summed), leave-one-out baseline,
# the clipped ratio of whole sequences.
rloo_beta = 0.05
rloo_rewards = [rewards[i] - rloo_beta * sum((old_logp[i, t] - ref_logp[i, t]) * mask[i, t] for t in range(T))
                for i in range(N)]
rloo_adv = []
for i in range(N):
    g = i // G
    others = [rloo_rewards[j] for j in range(g * G, (g + 1) * G) if j != i]
    rloo_adv.append(rloo_rewards[i] - sum(others) / len(others))
seq_loss, seq_clipped = [], []
for i in range(N):
    ratio = math.exp(sum((logp[i, t] - old_logp[i, t]) * mask[i, t] for t in range(T)))
    c = min(max(ratio, 1 - eps_low), 1 + eps_high)
    seq_loss.append(-min(ratio * rloo_adv[i], c * rloo_adv[i]))
    seq_clipped.append(1.0 if (ratio < 1 - eps_low and rloo_adv[i] < 0) or (ratio > 1 + eps_high and rloo_adv[i] > 0)
                       else 0.0)

out = {
    "inputs": {
        "group": G, "mask": mask.tolist(), "logp": logp.tolist(), "old_logp": old_logp.tolist(),
        "ref_logp": ref_logp.tolist(), "rewards": rewards.tolist(), "eps_low": eps_low, "eps_high": eps_high,
        "beta": beta, "max_length": max_length, "rloo_beta": rloo_beta,
    },
    "expected": {
        "advantages": advantages, "std_zero": std_zero, "token_loss": token_loss.tolist(), "loss": losses,
        "clipfrac": clipfrac, "kl_k3": kl_k3,
        "rloo_rewards": rloo_rewards, "rloo_advantages": rloo_adv, "rloo_loss": sum(seq_loss) / N,
        "rloo_clipfrac": sum(seq_clipped) / N,
    },
}
path = os.path.join(os.path.dirname(__file__), "..", "data", "grpo_expected.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
print("wrote", os.path.normpath(path))
