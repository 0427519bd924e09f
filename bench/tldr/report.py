"""RESULTS.md of the TL;DR run (bench/tldr/run.sh): the machine, the date, each stage's time
(OUT/timings.txt), the commands run (OUT/commands.txt), and on the held-out posts, greedy
before (base model) -> after (RL policy): share of summaries over 50 words, mean words (Python's
str.split(), the rule `rlhf label` and `rlhf sxs` count with), share that ended with EOS (infer's
`stopped`), mean reward-model score (OUT/sxs/sxs.jsonl); the final policy's KL to the reference
and the last steps' reward (OUT/policy/logs/metrics.jsonl); the goals; with the GRPO stages run
(OUT/grpo_after.jsonl), the base model, the PPO policy and the GRPO policy side by side on the
same figures and GRPO's last steps (OUT/grpo/logs/metrics.jsonl); the first posts' summaries
before and after; the path of the side-by-side page."""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

WORD_LIMIT = 50
GOAL_POINTS = 25  # the share over 50 words falls by at least this many points


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def words(text):
    return len(text.split())


def cpu():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def timings(path):
    """Stage -> [wall seconds, CPU seconds or None], summed over the lines of a stage (a resumed
    stage has more than one)."""
    t = {}
    if os.path.exists(path):
        for line in open(path, encoding="utf-8"):
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 2 and all(p.isdigit() for p in parts[1:]):
                w = t.setdefault(parts[0], [0, 0 if len(parts) > 2 else None])
                w[0] += int(parts[1])
                if len(parts) > 2 and w[1] is not None:
                    w[1] += int(parts[2])
    return t


def figures(rows, scores):
    n = len(rows)
    w = [words(r.get("prediction", "")) for r in rows]
    f = {"completions": n,
         "over": sum(x > WORD_LIMIT for x in w) / n,
         "mean words": statistics.mean(w),
         "median words": statistics.median(w),
         "eos": sum(bool(r.get("stopped")) for r in rows) / n}
    s = [scores.get(r["input_text"]) for r in rows]
    f["score"] = statistics.mean(s) if s and all(x is not None for x in s) else None
    return f


def sxs_scores(path):
    """input_text -> (score before, score after), from rlhf sxs's sxs.jsonl."""
    a, b = {}, {}
    if os.path.exists(path):
        for r in read_jsonl(path):
            if r.get("score_a") is not None:
                a[r["input_text"]] = r["score_a"]
            if r.get("score_b") is not None:
                b[r["input_text"]] = r["score_b"]
    return a, b


def metric(row, *keys):
    for k in keys:
        if row.get(k) is not None:
            return k, row[k]
    return None, None


def cut(text, n):
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n].rstrip() + " ..."


def grpo_section(out, before, fb, fa):
    """The GRPO run (stages grpo and grpo-after): the held-out figures of the base model, the PPO
    policy and the GRPO policy side by side, and the GRPO run's last steps; [] when it has not run."""
    path = os.path.join(out, "grpo_after.jsonl")
    if not os.path.exists(path):
        return []
    g = read_jsonl(path)
    if [r["input_text"] for r in g] != [r["input_text"] for r in before]:
        sys.exit(f"{path}: not the same prompts in the same order as before.jsonl")
    fg = figures(g, {})
    L = ["## GRPO with the rule alone (no reward model)\n",
         "`rlhf train-policy --method grpo --reward-rule max-words=50` on the same training prompts: each "
         "prompt's group of sampled completions scored by the rule (1 when at most 50 words, else 0; "
         "train-policy's default EOS penalty on top: a completion cut at the length limit loses 1), "
         "advantages relative to the group, no reward model and no value model (the `train-policy --method "
         "grpo` line under Commands). Held-out posts, greedy, the same base model before:\n",
         "| | before (base model) | after PPO (reward model) | after GRPO (rule) |",
         "|---|---|---|---|",
         f"| over {WORD_LIMIT} words | {100 * fb['over']:.0f} % | {100 * fa['over']:.0f} % | {100 * fg['over']:.0f} % |",
         f"| mean words | {fb['mean words']:.1f} | {fa['mean words']:.1f} | {fg['mean words']:.1f} |",
         f"| median words | {fb['median words']:.1f} | {fa['median words']:.1f} | {fg['median words']:.1f} |",
         f"| ended with EOS | {100 * fb['eos']:.0f} % | {100 * fa['eos']:.0f} % | {100 * fg['eos']:.0f} % |",
         ""]
    drop = 100 * (fb["over"] - fg["over"])
    L.append(f"- GRPO: share over {WORD_LIMIT} words falls by >= {GOAL_POINTS} points: "
             f"{'met' if drop >= GOAL_POINTS else 'missed'} ({drop:.0f} points)")
    mpath = os.path.join(out, "grpo", "logs", "metrics.jsonl")
    if os.path.exists(mpath):
        key = f"rewards/max-words={WORD_LIMIT}/mean"
        rows = [r for r in read_jsonl(mpath) if metric(r, key, "objective/scores")[0]]
        if rows:
            curve = []
            for r in rows[-5:]:
                _, v = metric(r, key, "objective/scores")
                _, n = metric(r, "response_length")
                curve.append(f"step {r.get('step', '?')}: {v:.3f}" + (f" ({n:.0f} tokens)" if n is not None else ""))
            k, v0 = metric(rows[0], key, "objective/scores")
            L.append(f"- The rule's reward of the rollouts (`{k}`: the share of sampled completions with at most "
                     f"{WORD_LIMIT} words), first step {v0:.3f}; last steps: " + "; ".join(curve))
        kl = [r for r in read_jsonl(mpath) if metric(r, "objective/kl_k3", "objective/kl")[0]]
        if kl:
            k, v = metric(kl[-1], "objective/kl_k3", "objective/kl")
            L.append(f"- KL of the final GRPO policy to the reference (`{k}`, last step): {v:.4f}")
    else:
        L.append(f"- {mpath}: absent")
    L.append("")
    return L


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="/tmp/tldr", help="run.sh's OUT folder")
    ap.add_argument("--results", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md"))
    ap.add_argument("--examples", type=int, default=3)
    a = ap.parse_args()
    out = a.out
    before_p, after_p = os.path.join(out, "before.jsonl"), os.path.join(out, "after.jsonl")
    for p in (before_p, after_p):
        if not os.path.exists(p):
            sys.exit(f"{p}: absent (run bench/tldr/run.sh to the end)")
    b, t = read_jsonl(before_p), read_jsonl(after_p)
    if [r["input_text"] for r in b] != [r["input_text"] for r in t]:
        sys.exit(f"{before_p} and {after_p}: not the same prompts in the same order")
    sa, sb = sxs_scores(os.path.join(out, "sxs", "sxs.jsonl"))
    fb, fa = figures(b, sa), figures(t, sb)

    L = []
    L.append("# TL;DR: the default model before and after RL tuning\n")
    L.append(f"Written by `bench/tldr/report.py` from `{out}` (`bench/tldr/run.sh`).\n")
    L.append(f"- Machine: {cpu()}, {os.cpu_count()} cores; {platform.system()} {platform.machine()}")
    L.append(f"- Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    L.append(f"- Held-out posts: {len(b)} (greedy, the same prompts before and after)")
    L.append(f"- Side-by-side page: `{os.path.join(os.path.abspath(out), 'sxs', 'sxs.html')}`\n")

    L.append("## Before -> after (held-out posts, greedy)\n")
    L.append("| | before (base model) | after (RL policy) |")
    L.append("|---|---|---|")
    L.append(f"| over {WORD_LIMIT} words | {100 * fb['over']:.0f} % | {100 * fa['over']:.0f} % |")
    L.append(f"| mean words | {fb['mean words']:.1f} | {fa['mean words']:.1f} |")
    L.append(f"| median words | {fb['median words']:.1f} | {fa['median words']:.1f} |")
    L.append(f"| ended with EOS | {100 * fb['eos']:.0f} % | {100 * fa['eos']:.0f} % |")
    fmt_s = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    L.append(f"| mean reward-model score | {fmt_s(fb['score'])} | {fmt_s(fa['score'])} |")
    L.append("")
    L.append("Words: whitespace-split (Python's `str.split()`), the count `rlhf label --rule max-words=50` "
             "and `rlhf sxs` use. EOS: infer's `stopped` (the summary ended before the token limit).\n")

    drop = 100 * (fb["over"] - fa["over"])
    L.append("## Goals\n")
    L.append(f"- share over {WORD_LIMIT} words falls by >= {GOAL_POINTS} points: "
             f"{'met' if drop >= GOAL_POINTS else 'missed'} ({drop:.0f} points)")
    if fb["score"] is None or fa["score"] is None:
        L.append("- mean score rises: n/a (no reward-model scores)")
    else:
        L.append(f"- mean score rises: {'met' if fa['score'] > fb['score'] else 'missed'} "
                 f"({fb['score']:.3f} -> {fa['score']:.3f})")
    L.append("")

    mpath = os.path.join(out, "policy", "logs", "metrics.jsonl")
    L.append("## RL\n")
    if os.path.exists(mpath):
        rows = [r for r in read_jsonl(mpath) if metric(r, "objective/kl_k3", "objective/kl")[0]]
        if rows:
            last = rows[-1]
            k, v = metric(last, "objective/kl_k3", "objective/kl")
            L.append(f"- KL of the final policy to the reference (`{k}`, last step): {v:.4f}")
            tail = rows[-5:]
            curve = []
            for r in tail:
                _, s = metric(r, "objective/scores")
                _, rr = metric(r, "objective/rlhf_reward")
                step = r.get("step", "?")
                curve.append(f"step {step}: score {s:.3f}" + (f", rlhf reward {rr:.3f}" if rr is not None else "")
                             if s is not None else f"step {step}: -")
            L.append(f"- Last steps (`objective/scores`: the reward model's score of the rollouts, after the EOS "
                     f"penalty; `objective/rlhf_reward`: minus the KL penalty): " + "; ".join(curve))
            first = rows[0]
            _, s0 = metric(first, "objective/scores")
            if s0 is not None:
                L.append(f"- First step: score {s0:.3f} (step {first.get('step', '?')}), {len(rows)} steps logged")
    else:
        L.append(f"- {mpath}: absent")
    L.append("- RL flags: those on the `train-policy` line below; any flag not on it is the trainer's default "
             "(`rlhf train-policy --help`).\n")

    L.extend(grpo_section(out, b, fb, fa))

    tm = timings(os.path.join(out, "timings.txt"))
    L.append("## Time per stage\n")
    L.append("Wall seconds, and the CPU seconds of the stage's commands (user + system, all threads): on a "
             "machine shared with other jobs the wall time grows, the CPU time much less.\n")
    L.append("| stage | wall s | CPU s |")
    L.append("|---|---|---|")
    for k, (w, c) in tm.items():
        L.append(f"| {k} | {w} | {'' if c is None else c} |")
    tw = sum(w for w, _ in tm.values())
    tc = sum(c or 0 for _, c in tm.values())
    L.append(f"| total | {tw} ({tw / 60:.1f} min) | {tc} |\n")

    L.append("## Commands\n")
    cpath = os.path.join(out, "commands.txt")
    L.append("```")
    if os.path.exists(cpath):
        L.extend(line.rstrip("\n") for line in open(cpath, encoding="utf-8"))
    L.append("```\n")

    L.append(f"## Examples (the first {min(a.examples, len(b))} held-out posts, cut)\n")
    for i in range(min(a.examples, len(b))):
        x, y = b[i], t[i]
        L.append(f"### {i + 1}\n")
        L.append(f"Post (end): ...{cut(x['input_text'][-300:], 300)}\n")
        if x.get("gold_response"):
            L.append(f"- reference ({words(x['gold_response'])} words): {cut(x['gold_response'], 400)}")
        for name, r, sc in (("before", x, sa), ("after", y, sb)):
            s = sc.get(r["input_text"])
            tag = "EOS" if r.get("stopped") else "cut at the limit"
            L.append(f"- {name} ({words(r.get('prediction', ''))} words, {tag}"
                     + (f", score {s:.2f}" if s is not None else "") + f"): {cut(r.get('prediction', ''), 400)}")
        L.append("")

    os.makedirs(os.path.dirname(os.path.abspath(a.results)), exist_ok=True)
    tmp = a.results + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(L).rstrip() + "\n")
    os.replace(tmp, a.results)
    print(f"{a.results}: over {WORD_LIMIT} words {100 * fb['over']:.0f} % -> {100 * fa['over']:.0f} %, "
          f"mean score {fmt_s(fb['score'])} -> {fmt_s(fa['score'])}")
    gp = os.path.join(out, "grpo_after.jsonl")
    if os.path.exists(gp):
        fg = figures(read_jsonl(gp), {})
        print(f"GRPO: over {WORD_LIMIT} words {100 * fb['over']:.0f} % -> {100 * fg['over']:.0f} %, "
              f"mean words {fb['mean words']:.1f} -> {fg['mean words']:.1f}")


if __name__ == "__main__":
    main()
