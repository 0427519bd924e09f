"""Before and after RL tuning, on the held-out prompts: reads the greedy evaluation completions
that `rlhf train-policy --eval-dataset` writes (OUT/eval/step-0000000.jsonl before training, the
highest step after) and prints the share over 50 words, mean and median words, mean reward,
the share that ended with EOS, and a few examples side by side."""
import argparse
import glob
import json
import os
import statistics
import sys
import textwrap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
WORD_LIMIT = 50


def read(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def words(text):
    return len(text.split())


def figures(rows):
    w = [words(r.get("prediction", "")) for r in rows]
    f = {"completions": len(rows),
         f"over {WORD_LIMIT} words": sum(n > WORD_LIMIT for n in w) / len(rows),
         "mean words": statistics.mean(w),
         "median words": statistics.median(w),
         "mean reward": statistics.mean(r["reward"] for r in rows),
         "ended with EOS": sum(bool(r.get("stopped")) for r in rows) / len(rows),
         f"ended, <= {WORD_LIMIT} words": sum(bool(r.get("stopped")) and n <= WORD_LIMIT for r, n in zip(rows, w)) / len(rows)}
    if all("score" in r for r in rows):
        f["mean reward-model score"] = statistics.mean(r["score"] for r in rows)
    return f


def fmt(key, v):
    if key == "completions":
        return f"{v:d}"
    if key.startswith(("over", "ended")):
        return f"{100 * v:.0f} %"
    return f"{v:.3f}" if "reward" in key or "score" in key else f"{v:.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("policy", nargs="?", default="/tmp/tldr/policy", help="train-policy --output folder")
    ap.add_argument("--before", help="eval file before training (default: OUT/eval/step-0000000.jsonl)")
    ap.add_argument("--after", help="eval file after training (default: the highest step in OUT/eval)")
    ap.add_argument("--examples", type=int, default=3, help="held-out prompts shown side by side")
    ap.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    a = ap.parse_args()
    files = sorted(glob.glob(os.path.join(a.policy, "eval", "step-*.jsonl")))
    before = a.before or os.path.join(a.policy, "eval", "step-0000000.jsonl")
    after = a.after or (files[-1] if files else None)
    if not os.path.exists(before) or not after or os.path.abspath(after) == os.path.abspath(before):
        sys.exit(f"{a.policy}/eval: needs the evaluation before training (step 0) and one after it")
    b, t = read(before), read(after)
    if [r["input_text"] for r in b] != [r["input_text"] for r in t]:
        sys.exit(f"{before} and {after}: not the same prompts in the same order")
    fb, ft = figures(b), figures(t)
    if a.json:
        print(json.dumps({"before": {"file": before, **fb}, "after": {"file": after, **ft}}))
        return
    step = os.path.basename(after)[len("step-"):-len(".jsonl")].lstrip("0") or "0"
    print(f"held-out prompts, greedy completions: before RL ({os.path.basename(before)}) vs after {step} steps "
          f"({os.path.basename(after)})")
    print(f"{'':28}{'before':>10}{'after':>10}")
    for k in fb:
        print(f"{k:28}{fmt(k, fb[k]):>10}{fmt(k, ft[k]):>10}")
    for i in range(min(a.examples, len(b))):
        print(f"\n--- example {i + 1}: ...{b[i]['input_text'][-160:]!r}")
        if b[i].get("gold_response"):
            print(textwrap.fill(f"reference ({words(b[i]['gold_response'])} words): {b[i]['gold_response']}", 100,
                                subsequent_indent="    "))
        for name, r in (("before", b[i]), ("after", t[i])):
            tag = "EOS" if r.get("stopped") else "cut"
            print(textwrap.fill(f"{name} ({words(r['prediction'])} words, {tag}, reward {r['reward']:.2f}): "
                                f"{r['prediction']}", 100, subsequent_indent="    "))


if __name__ == "__main__":
    main()
