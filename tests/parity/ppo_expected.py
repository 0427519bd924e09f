"""Expected values of the PPO arithmetic, computed with plain NumPy loops.

Writes tests/data/ppo_expected.json (inputs and outputs) which tests/model/test_ppo.cpp
checks rlhf::ppo against. Run: .venv/bin/python tests/parity/ppo_expected.py
"""
import json
import math
import os

import numpy as np

rng = np.random.default_rng(1234)
B, T = 3, 5
mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=np.float64)
logp = np.round(rng.normal(-2.0, 0.7, (B, T)), 4)
ref_logp = np.round(logp + rng.normal(0.0, 0.3, (B, T)), 4)
new_logp = np.round(logp + rng.normal(0.0, 0.25, (B, T)), 4)
values = np.round(rng.normal(0.0, 0.5, (B, T)), 4)
new_values = np.round(values + rng.normal(0.0, 0.3, (B, T)), 4)
scores = np.array([1.5, -0.25, 0.75])
stopped = [True, False, True]
penalty = -1.0
kl_coeff = 0.1
gamma, lam = 1.0, 0.95
clip, clip_v = 0.2, 0.2
logits = np.round(rng.normal(0.0, 2.0, (2, 3, 7)), 4)
tokens = rng.integers(0, 7, (2, 3))

# EOS trick.
pen_scores = [s if st else penalty for s, st in zip(scores, stopped)]

# KL and rewards, token by token.
kl = np.zeros((B, T))
rewards = np.zeros((B, T))
for b in range(B):
    n = int(mask[b].sum())
    for t in range(n):
        kl[b, t] = logp[b, t] - ref_logp[b, t]
        rewards[b, t] = -kl_coeff * kl[b, t]
    rewards[b, n - 1] += pen_scores[b]

# GAE: the episode ends after the last real token.
adv = np.zeros((B, T))
for b in range(B):
    n = int(mask[b].sum())
    running = 0.0
    for t in reversed(range(n)):
        next_v = values[b, t + 1] if t + 1 < n else 0.0
        delta = rewards[b, t] + gamma * next_v - values[b, t]
        running = delta + gamma * lam * running
        adv[b, t] = running
returns = np.where(mask > 0, adv + values, 0.0)

# Whitening over real tokens (unbiased variance).
real = [adv[b, t] for b in range(B) for t in range(T) if mask[b, t] > 0]
m = sum(real) / len(real)
var = sum((x - m) ** 2 for x in real) / (len(real) - 1)
white = np.where(mask > 0, (adv - m) / math.sqrt(var + 1e-8), 0.0)

# Clipped policy loss on the whitened advantages.
pg, clipped_count, akl, count = 0.0, 0, 0.0, 0
for b in range(B):
    for t in range(T):
        if mask[b, t] == 0:
            continue
        ratio = math.exp(new_logp[b, t] - logp[b, t])
        a = white[b, t]
        l1 = -a * ratio
        l2 = -a * min(max(ratio, 1 - clip), 1 + clip)
        pg += max(l1, l2)
        clipped_count += 1 if l2 > l1 else 0
        akl += 0.5 * (new_logp[b, t] - logp[b, t]) ** 2
        count += 1
pg_loss, pg_clipfrac, approxkl = pg / count, clipped_count / count, akl / count

# Clipped value loss.
vl, vclip = 0.0, 0
for b in range(B):
    for t in range(T):
        if mask[b, t] == 0:
            continue
        v, old, R = new_values[b, t], values[b, t], returns[b, t]
        vc = old + min(max(v - old, -clip_v), clip_v)
        l1, l2 = (v - R) ** 2, (vc - R) ** 2
        vl += max(l1, l2)
        vclip += 1 if l2 > l1 else 0
v_loss, v_clipfrac = 0.5 * vl / count, vclip / count

# Entropy and token log-probs from logits.
ent = np.zeros((2, 3))
tlp = np.zeros((2, 3))
for i in range(2):
    for j in range(3):
        z = logits[i, j]
        mx = max(z)
        p = [math.exp(x - mx) for x in z]
        s = sum(p)
        p = [x / s for x in p]
        ent[i, j] = -sum(x * math.log(x) for x in p)
        tlp[i, j] = math.log(p[tokens[i, j]])

# Adaptive KL: three updates.
coef, target, horizon = 0.2, 6.0, 10000.0
kl_history = []
for current, n in [(12.0, 64), (3.0, 64), (6.6, 128)]:
    err = min(max(current / target - 1, -0.2), 0.2)
    coef *= 1 + err * n / horizon
    kl_history.append(coef)

out = {
    "inputs": {
        "mask": mask.tolist(), "logp": logp.tolist(), "ref_logp": ref_logp.tolist(),
        "new_logp": new_logp.tolist(), "values": values.tolist(), "new_values": new_values.tolist(),
        "scores": scores.tolist(), "stopped": stopped, "penalty": penalty, "kl_coeff": kl_coeff,
        "gamma": gamma, "lam": lam, "cliprange": clip, "cliprange_value": clip_v,
        "logits": logits.tolist(), "tokens": tokens.tolist(),
        "adaptive_kl": {"init": 0.2, "target": target, "horizon": horizon,
                        "updates": [[12.0, 64], [3.0, 64], [6.6, 128]]},
    },
    "expected": {
        "penalized_scores": pen_scores, "kl": kl.tolist(), "rewards": rewards.tolist(),
        "advantages": adv.tolist(), "returns": returns.tolist(), "whitened": white.tolist(),
        "pg_loss": pg_loss, "pg_clipfrac": pg_clipfrac, "approxkl": approxkl,
        "vf_loss": v_loss, "vf_clipfrac": v_clipfrac,
        "entropy": ent.tolist(), "token_logprobs": tlp.tolist(), "adaptive_kl": kl_history,
    },
}
path = os.path.join(os.path.dirname(__file__), "..", "data", "ppo_expected.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
print("wrote", os.path.normpath(path))
