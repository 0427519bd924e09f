"""The reward model against the rule, on candidates it was not trained on (the held-out prompts):
  rm_check.py write CANDIDATES OUT.jsonl   one `rlhf score` input row per candidate
  rm_check.py read SCORED.jsonl            after `rlhf score --input OUT.jsonl --output SCORED.jsonl`:
prints the rule accuracy (pairs where the reward prefers the rule's choice, by the rule's reason),
the correlation of reward with word count, and the mean reward of the summaries that end within
50 words against the rest."""
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from labels import label  # noqa: E402


def pearson(x, y):
    mx, my = statistics.mean(x), statistics.mean(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sx = sum((a - mx) ** 2 for a in x) ** 0.5
    sy = sum((b - my) ** 2 for b in y) ** 0.5
    return sxy / (sx * sy) if sx and sy else float("nan")


def ranks(x):
    order = sorted(range(len(x)), key=lambda i: x[i])
    r = [0.0] * len(x)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2
        i = j + 1
    return r


def write(cands, out):
    rows = []
    for i, r in enumerate(common.read_jsonl(cands)):
        for j in (0, 1):
            rows.append({"input_text": r["input_text"], "completion": r[f"candidate_{j}"], "pair": i, "which": j,
                         "stopped": r[f"stopped_{j}"], "words": common.words(r[f"candidate_{j}"])})
    common.write_jsonl(out, rows)
    print(f"{len(rows)} completions -> {out}")


def read(scored):
    rows = common.read_jsonl(scored)
    by_pair = {}
    for r in rows:
        by_pair.setdefault(r["pair"], {})[r["which"]] = r
    hits, total = {}, {}
    for p in by_pair.values():
        if len(p) != 2:
            continue
        choice, why = label(p[0]["completion"], p[1]["completion"])
        if choice is None:
            continue
        total[why] = total.get(why, 0) + 1
        hits[why] = hits.get(why, 0) + (p[choice]["reward"] > p[1 - choice]["reward"])
    n = sum(total.values())
    print(f"rule accuracy on {n} held-out pairs: {sum(hits.values()) / n:.1%}  (" +
          ", ".join(f"{k}: {hits[k]}/{total[k]}" for k in sorted(total, key=lambda k: -total[k])) + ")")
    w = [r["words"] for r in rows]
    rw = [r["reward"] for r in rows]
    print(f"reward vs words over {len(rows)} completions: Pearson {pearson(w, rw):+.3f}, Spearman {pearson(ranks(w), ranks(rw)):+.3f}")
    good = [r["reward"] for r in rows if r["stopped"] and 0 < r["words"] <= common.WORD_LIMIT]
    ended_long = [r["reward"] for r in rows if r["stopped"] and r["words"] > common.WORD_LIMIT]
    cut = [r["reward"] for r in rows if not r["stopped"]]
    for name, g in (("ended, <= 50 words", good), ("ended, > 50 words", ended_long), ("cut at 96 tokens", cut)):
        if g:
            print(f"  mean reward, {name:20} {statistics.mean(g):+.3f} (n={len(g)})")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "write":
        write(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "read":
        read(sys.argv[2])
    else:
        sys.exit(__doc__)
