"""One GRPO / RLOO step (generation of a group of completions per prompt, the rule reward,
log-probs, the update), `rlhf train-policy --method grpo|rloo` vs TRL's GRPOTrainer /
RLOOTrainer: seconds per step and peak memory, the same prompts, sizes, reward and threads, in
one run.

Makes (once, outside the figures) the prompt file and TRL's fp32 copy of the GGUF; then, for each
method of --methods in turn, runs `rlhf train-policy --method M --reward-rule max-words=N` (no
reward model; once for each --ours-variant, or plain) and bench/grpo_trl.py --method M as child
processes, one at a time, --repeats times each, each for --warmup-steps + --steps steps, and
prints a table for that method. A step's time leaves out model loading; the warm-up steps are
left out of the medians. Peak RSS is each child's ru_maxrss (os.wait4), so loading counts too,
the same way on both sides.

Prompts: TL;DR posts (the form bench/tldr uses: the post, then " [summary]: "), each cut to its
last P tokens and decoded, kept when the text tokenizes back to exactly P ids (so both sides see
the same P ids); B x (warm-up + steps) different posts. Both sides sample G completions a prompt
of at most T tokens at the same temperature and stop a completion at EOS (a batch goes on until
its last completion stops). The reward is the rule max-words=N on both sides (TRL: a Python
function doing the same); with T small, N below 50 keeps the rewards of a group apart (all-equal
rewards give zero advantages). Ours runs with --no-eos-penalty: TRL's GRPO and RLOO have no
penalty for a completion cut at T, so both sides' rewards are the rule's alone.

Settings both sides take: B prompts a step, G completions each, micro batches of M completions,
LoRA rank r (alpha r) on q_proj/v_proj, the method's KL coefficient (--kl-coeff; default the
method's TRL default: GRPO 0, RLOO 0.05), GRPO's loss type and reward scaling (TRL's defaults:
dapo, group), clip 0.2, one iteration, fp32, a constant learning rate. The last lines of output
are `<method>_step_speedup_vs_trl X.XX peak_rss_ratio Y.YY`, one for each method, for the
headline (the first variant); nan where a side is missing.
Python here is for benchmarking only.
"""
import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import ppo_bench  # noqa: E402  (run_child, check_tokens, step_metrics, without_options, hf_folder)

CACHE = ppo_bench.CACHE
PHASES = ("generate", "score", "logprobs", "train")
DEFAULT_KL = {"grpo": 0.0, "rloo": 0.05}
SUFFIX = " [summary]: "


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", choices=["grpo", "rloo"], default=["grpo", "rloo"])
    ap.add_argument("--gguf", default=os.path.join(CACHE, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "external", "tldr-sft-dove",
                                                   "test.jsonl"), help="TL;DR posts (the `instruction` field)")
    ap.add_argument("--batch-size", type=int, default=4, help="B: prompts a step")
    ap.add_argument("--num-generations", type=int, default=4, help="G: completions a prompt")
    ap.add_argument("--micro-batch-size", type=int, default=16, help="M: completions a forward/backward")
    ap.add_argument("--prompt-length", type=int, default=64, help="P")
    ap.add_argument("--target-length", type=int, default=32, help="T")
    ap.add_argument("--max-words", type=int, default=20, help="the rule max-words=N")
    ap.add_argument("--steps", type=int, default=3, help="timed steps")
    ap.add_argument("--warmup-steps", type=int, default=1, help="steps before them, left out of the medians")
    ap.add_argument("--lora-rank", type=int, default=8)
    ap.add_argument("--kl-coeff", type=float, default=None, help="both sides (default: the method's TRL default)")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--lr-multiplier", type=float, default=1.0, help="lr = 1e-4 x this, both sides")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="runs of each side; medians over all their timed steps")
    ap.add_argument("--ours-args", default="", help="more train-policy options for every variant (one string)")
    ap.add_argument("--ours-variant", action="append", default=[], metavar="NAME=ARGS",
                    help="run ours also (or instead of plain) with the extra train-policy options ARGS, as column "
                    "NAME; repeatable; the first is the headline")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--python", default=os.path.join(ROOT, ".venv", "bin", "python"))
    ap.add_argument("--skip-ours", action="store_true", help="run only TRL (testing)")
    ap.add_argument("--skip-trl", action="store_true", help="run only ours (testing)")
    ap.add_argument("--timeout", type=float, default=0, help="kill a run that takes longer (seconds; 0 = no limit)")
    ap.add_argument("--workdir", help="keep the prompts and run folders here (default: a temp folder, removed)")
    ap.add_argument("--json", action="store_true", help="also print every run's figures as JSON lines")
    a = ap.parse_args()
    if (a.batch_size * a.num_generations) % a.micro_batch_size:
        sys.exit("B x G must be a multiple of --micro-batch-size")
    variants = []
    for v in a.ours_variant:
        name, eq, args = v.partition("=")
        if not eq or not name.strip() or name == "TRL" or name in (n for n, _ in variants):
            sys.exit(f"--ours-variant {v!r}: expected NAME=ARGS with a new NAME")
        variants.append((name, shlex.split(args)))
    a.variants = variants or [("rlhf", [])]
    return a


def make_prompts(a, folder, tok):
    """B x (warm-up + steps) posts, each the text of its last P tokens, kept when it tokenizes
    back to exactly P ids."""
    n = a.batch_size * (a.warmup_steps + a.steps)
    rows = []
    with open(a.data, encoding="utf-8") as f:
        for line in f:
            if len(rows) >= n:
                break
            if not line.strip():
                continue
            text = json.loads(line)["instruction"].strip() + SUFFIX
            ids = tok(text, add_special_tokens=False)["input_ids"]
            if len(ids) < a.prompt_length + 8:
                continue
            for extra in range(8):  # a cut inside a merged token may decode to a longer tokenization
                t = tok.decode(ids[-a.prompt_length - extra:])
                k = len(tok(text=[t])["input_ids"][0])
                if k >= a.prompt_length:
                    if k == a.prompt_length:
                        rows.append(t)
                    break
    if len(rows) < n:
        sys.exit(f"{a.data}: only {len(rows)} posts give prompts of exactly P = {a.prompt_length} tokens, {n} needed")
    path = os.path.join(folder, "prompts.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for t in rows:
            f.write(json.dumps({"input_text": t}) + "\n")
    return path, rows


def kl_of(a, method):
    return DEFAULT_KL[method] if a.kl_coeff is None else a.kl_coeff


def run_ours(a, method, prompts, folder, i, variant):
    name, extra = variant
    out = os.path.join(folder, f"ours-{method}-{''.join(c if c.isalnum() or c in '-_.' else '_' for c in name)}-{i}")
    shutil.rmtree(out, ignore_errors=True)
    steps = a.warmup_steps + a.steps
    cmd = [os.path.join(a.build, "rlhf"), "train-policy", "--method", method, "--prompt-dataset", prompts,
           "--reward-rule", f"max-words={a.max_words}", "--output", out, "--model", a.gguf,
           "--prompt-format", "raw", "--reinforcement-learning-train-steps", str(steps),
           "--batch-size", str(a.batch_size), "--num-generations", str(a.num_generations),
           "--micro-batch-size", str(a.micro_batch_size), "--prompt-sequence-length", str(a.prompt_length),
           "--target-sequence-length", str(a.target_length), "--lora-rank", str(a.lora_rank),
           "--kl-coeff", str(kl_of(a, method)), "--temperature", str(a.temperature),
           "--reinforcement-learning-rate-multiplier", str(a.lr_multiplier),
           "--threads", str(a.threads), "--dtype", "fp32", "--seed", str(a.seed),
           "--no-eos-penalty", "--checkpoint-every", str(steps), "--no-progress"]
    more = shlex.split(a.ours_args) + extra
    cmd = ppo_bench.without_options(cmd, {w.split("=", 1)[0] for w in more if w.startswith("--")}) + more
    wall, rss, _ = ppo_bench.run_child(cmd, out)
    with open(os.path.join(out, "summary.json")) as f:
        s = json.load(f)
    recs = ppo_bench.step_metrics(out)
    w = a.warmup_steps if len(recs) > a.warmup_steps else 0
    r = {"impl": "rlhf", "method": method, "variant": name, "extra_args": extra, "peak_rss_kib": rss,
         "wall_seconds": round(wall, 1), "own_peak_rss_bytes": s.get("peak_rss_bytes"), "steps": s.get("steps"),
         "step_seconds": [x["time/step"] for x in recs],
         "phase_seconds": [{p: x.get(f"time/{p}") for p in PHASES} for x in recs],
         "response_length": [x.get("response_length") for x in recs],
         "reward_mean": [x.get(f"rewards/max-words={a.max_words}/mean") for x in recs],
         "warmup_left_out": w > 0}
    if not recs:
        r["step_seconds"] = [s.get("step_seconds_median")]
    r["timed_step_seconds"] = r["step_seconds"][w:]
    r["timed_phase_seconds"] = r["phase_seconds"][w:]
    r["timed_response_length"] = r["response_length"][w:]
    return r


def run_trl(a, method, prompts, folder, i):
    out = os.path.join(folder, f"trl-{method}-{i}")
    cmd = [a.python, os.path.join(HERE, "grpo_trl.py"), "--method", method, "--prompts", prompts, "--gguf", a.gguf,
           "--steps", str(a.warmup_steps + a.steps), "--batch-size", str(a.batch_size),
           "--num-generations", str(a.num_generations), "--micro-batch-size", str(a.micro_batch_size),
           "--prompt-length", str(a.prompt_length), "--target-length", str(a.target_length),
           "--max-words", str(a.max_words), "--lora-rank", str(a.lora_rank), "--beta", str(kl_of(a, method)),
           "--temperature", str(a.temperature), "--learning-rate", str(1e-4 * a.lr_multiplier),
           "--seed", str(a.seed), "--threads", str(a.threads), "--output-dir", out]
    wall, rss, stdout = ppo_bench.run_child(cmd, out)
    r = json.loads(stdout.strip().splitlines()[-1])
    w = a.warmup_steps if len(r["step_seconds"]) > a.warmup_steps else 0
    r.update(peak_rss_kib=rss, wall_seconds=round(wall, 1), warmup_left_out=w > 0,
             timed_step_seconds=r["step_seconds"][w:], timed_phase_seconds=r["phase_seconds"][w:],
             timed_response_length=r["response_length"][w:])
    return r


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def step_med(runs):
    return med([x for r in runs for x in r["timed_step_seconds"]])


def phase_med(runs, p):
    return med([x.get(p) for r in runs for x in r.get("timed_phase_seconds") or []])


def rss_med(runs):
    return med([r["peak_rss_kib"] for r in runs])


def print_table(a, method, ours, trl):
    def fmt(v):
        return "-" if v is None else f"{v:.4g}"

    def ratio(x, y):
        return x / y if x and y else None

    def mib(v):
        return "-" if v is None else f"{v / 1024:.0f} MiB"

    names = list(ours) if not a.skip_ours else []
    rows = []
    t = step_med(trl)
    rows.append(("s/step", [(fmt(step_med(ours[n])), ratio(t, step_med(ours[n]))) for n in names], fmt(t), ">= 1.5x",
                 lambda r: r >= 1.5))
    for p in PHASES:
        t = phase_med(trl, p)
        rows.append((f"  {p}", [(fmt(phase_med(ours[n], p)), ratio(t, phase_med(ours[n], p))) for n in names], fmt(t),
                     "", None))
    t = rss_med(trl)
    rows.append(("peak RSS", [(mib(rss_med(ours[n])), ratio(rss_med(ours[n]), t)) for n in names], mib(t), "<= 0.6x",
                 lambda r: r <= 0.6))
    rows.append(("completion tokens", [(fmt(med([x for r in ours[n] for x in r.get("timed_response_length") or []])),
                                        None) for n in names],
                 fmt(med([x for r in trl for x in r.get("timed_response_length") or []])), "", None))
    w = max([10] + [len(n) for n in names])
    print(f"## {method.upper()}, {a.threads} thread{'s' if a.threads != 1 else ''}")
    print(f"{'':18} " + "".join(f"{n:>{w}} {'ratio':>7} " for n in names) + f"{'TRL':>10} {'goal':>8}")
    for label, cols, tv, goal, test in rows:
        line = f"{label:18} "
        for v, r in cols:
            rs = "" if label == "completion tokens" else "-" if r is None else f"{r:.2f}x"
            line += f"{v:>{w}} {rs:>7} "
        met = [n for n, (_, r) in zip(names, cols) if test and r is not None and test(r)]
        line += f"{tv:>10} {goal:>8}"
        if met:
            line += "  met: " + ", ".join(met) if len(names) > 1 else "  met"
        print(line.rstrip())
    print(f"# s/step: median seconds of a step ({a.batch_size} prompts x {a.num_generations} completions: generation, "
          "rule reward, log-probs, update; no loading); ratio TRL/ours. generate/score/logprobs/train: the step's "
          "parts (logprobs = old-policy and reference log-probs computed apart from the update; train = the rest). "
          "peak RSS: ours/TRL, each whole process. completion tokens: mean tokens a completion, EOS included.")
    for n in names:
        if ours[n] and not all(x["warmup_left_out"] for x in ours[n]):
            print(f"# {n} gave no per-step times: its figure is its own median over all steps, warm-up included")
    sys.stdout.flush()


def main():
    a = parse_args()
    ppo_bench.TIMEOUT = a.timeout
    if not a.skip_ours:
        if not os.access(os.path.join(a.build, "rlhf"), os.X_OK):
            sys.exit(f"{a.build}/rlhf not built (or pass --skip-ours)")
        help_text = subprocess.run([os.path.join(a.build, "rlhf"), "train-policy", "--help"], capture_output=True,
                                   text=True).stdout
        if "--reward-rule" not in help_text or "--num-generations" not in help_text:
            sys.exit(f"{a.build}/rlhf train-policy has no --method grpo|rloo with --reward-rule (or pass --skip-ours)")
    folder = a.workdir or tempfile.mkdtemp(prefix="grpo_bench_")
    os.makedirs(folder, exist_ok=True)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    settings = (f"B {a.batch_size} prompts x G {a.num_generations}, micro batch {a.micro_batch_size} completions, "
                f"P {a.prompt_length}, T {a.target_length}, reward max-words={a.max_words}, LoRA rank {a.lora_rank} "
                f"on q/v, kl " + ", ".join(f"{m} {kl_of(a, m):g}" for m in a.methods) +
                f", temperature {a.temperature}, lr {1e-4 * a.lr_multiplier:g}, {a.warmup_steps} warm-up + {a.steps} "
                f"timed steps, {a.repeats} run(s) a side, seed {a.seed}, fp32, {a.threads} threads; {cpu}")
    print("# GRPO / RLOO step, rlhf train-policy vs TRL GRPOTrainer / RLOOTrainer")
    print("# " + settings, flush=True)

    subprocess.run([a.python, os.path.join(HERE, "grpo_trl.py"), "--prompts", "-", "--gguf", a.gguf,
                    "--prepare-only"], check=True, cwd=ROOT, stderr=subprocess.DEVNULL)
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(ppo_bench.hf_folder(a))
    prompts, rows = make_prompts(a, folder, tok)
    if not a.skip_ours and not a.skip_trl:
        ppo_bench.check_tokens(a, tok, rows)
    if not a.skip_ours:
        print("# ours: " + "; ".join(f"{n} = train-policy {' '.join(shlex.split(a.ours_args) + x)}".rstrip()
                                     for n, x in a.variants), flush=True)

    results = []
    for method in a.methods:
        ours, trl = {n: [] for n, _ in a.variants}, []
        for i in range(a.repeats):
            if not a.skip_ours:
                for v in a.variants:
                    o = run_ours(a, method, prompts, folder, i, v)
                    ours[v[0]].append(o)
                    print(f"# {v[0]} {method} run {i + 1}: {json.dumps(o)}" if a.json else
                          f"# {v[0]} {method} run {i + 1}: steps {o['timed_step_seconds']} s, {o['wall_seconds']} s "
                          "in all", flush=True)
            if not a.skip_trl:
                t = run_trl(a, method, prompts, folder, i)
                trl.append(t)
                print(f"# trl {method} run {i + 1}: {json.dumps(t)}" if a.json else
                      f"# trl {method} run {i + 1}: steps {t['step_seconds']} s, {t['wall_seconds']} s in all",
                      flush=True)
        results.append((method, ours, trl))
        print_table(a, method, ours, trl)

    print(json.dumps({"settings": settings, "runs": [{"method": m, "rlhf": o, "trl": t} for m, o, t in results]}))
    if not a.workdir:
        shutil.rmtree(folder, ignore_errors=True)
    for method, ours, trl in results:
        head = ours[a.variants[0][0]]
        o, t = step_med(head), step_med(trl)
        speed = t / o if o and t else float("nan")
        o, t = rss_med(head), rss_med(trl)
        rss = o / t if o and t else float("nan")
        print(f"{method}_step_speedup_vs_trl {speed:.2f} peak_rss_ratio {rss:.2f}", flush=True)


if __name__ == "__main__":
    main()
