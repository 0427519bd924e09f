"""Expected values of the DPO arithmetic, computed with plain NumPy loops.

Writes tests/data/dpo_expected.json (inputs and outputs) which tests/model/test_dpo.cpp
checks rlhf::dpo against: the loss of each pair for each loss type (sigmoid, ipo, hinge),
the sigmoid loss with label smoothing, the implicit rewards, and summed completion
log-probs from logits. The definitions are TRL 1.16's DPOTrainer
(trl/trainer/dpo_trainer.py): sigmoid -logsigmoid(beta * delta), hinge relu(1 - beta * delta),
ipo (delta_c / n_c - delta_r / n_r - 1 / (2 beta))^2 with n the completion's token count;
label smoothing eps gives conservative DPO, -(1 - eps) logsigmoid(z) - eps logsigmoid(-z).
Run: .venv/bin/python tests/parity/dpo_expected.py
"""
import json
import math
import os

import numpy as np

rng = np.random.default_rng(2024)
B = 6
ref_chosen = np.round(rng.normal(-40.0, 8.0, B), 4)
ref_rejected = np.round(rng.normal(-45.0, 8.0, B), 4)
chosen = np.round(ref_chosen + rng.normal(0.5, 3.0, B), 4)
rejected = np.round(ref_rejected + rng.normal(-0.5, 3.0, B), 4)
chosen_tokens = [float(x) for x in rng.integers(3, 40, B)]
rejected_tokens = [float(x) for x in rng.integers(3, 40, B)]


def log_sigmoid(x):
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def losses(loss_type, beta, eps):
    out = []
    for b in range(B):
        rc = chosen[b] - ref_chosen[b]
        rr = rejected[b] - ref_rejected[b]
        z = beta * (rc - rr)
        if loss_type == "sigmoid":
            out.append(-(1 - eps) * log_sigmoid(z) - eps * log_sigmoid(-z))
        elif loss_type == "hinge":
            out.append(max(0.0, 1.0 - z))
        elif loss_type == "ipo":
            d = rc / max(chosen_tokens[b], 1.0) - rr / max(rejected_tokens[b], 1.0)
            out.append((d - 1.0 / (2.0 * beta)) ** 2)
    return out


cases = []
for loss_type, beta, eps in [("sigmoid", 0.1, 0.0), ("sigmoid", 0.1, 0.2), ("sigmoid", 0.5, 0.0),
                             ("ipo", 0.1, 0.0), ("ipo", 0.5, 0.0), ("hinge", 0.1, 0.0), ("hinge", 0.5, 0.0)]:
    ls = losses(loss_type, beta, eps)
    rc = [beta * (chosen[b] - ref_chosen[b]) for b in range(B)]
    rr = [beta * (rejected[b] - ref_rejected[b]) for b in range(B)]
    cases.append({
        "loss_type": loss_type, "beta": beta, "label_smoothing": eps,
        "losses": ls, "loss": sum(ls) / B,
        "rewards_chosen": rc, "rewards_rejected": rr,
        "margins": sum(c - r for c, r in zip(rc, rr)) / B,
        "accuracies": sum(1.0 for c, r in zip(rc, rr) if c > r) / B,
    })

# Summed log-probs per completion from logits: N token positions, segments of them.
N, V, S = 7, 5, 3
logits = np.round(rng.normal(0.0, 2.0, (N, V)), 4)
targets = rng.integers(0, V, N)
segment = [0, 0, 1, 1, 1, 2, 0]
seg_logps = [0.0] * S
for k in range(N):
    m = max(logits[k])
    lse = m + math.log(sum(math.exp(x - m) for x in logits[k]))
    seg_logps[segment[k]] += logits[k][targets[k]] - lse

data = {
    "inputs": {
        "chosen": chosen.tolist(), "rejected": rejected.tolist(),
        "ref_chosen": ref_chosen.tolist(), "ref_rejected": ref_rejected.tolist(),
        "chosen_tokens": chosen_tokens, "rejected_tokens": rejected_tokens,
        "logits": logits.tolist(), "targets": [int(t) for t in targets], "segment": segment, "segments": S,
    },
    "cases": cases,
    "segment_logps": seg_logps,
}
path = os.path.join(os.path.dirname(__file__), "..", "data", "dpo_expected.json")
with open(path, "w") as f:
    json.dump(data, f, indent=1)
    f.write("\n")
print("wrote", os.path.normpath(path))
