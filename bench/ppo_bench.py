"""One PPO step (rollout, log-probs, scoring, update), rlhf train-policy vs TRL's PPOTrainer:
seconds per step and peak memory, the same prompts, sizes, recipe and threads, in one run.

Makes (once, outside the figures) the prompt file, a reward model for ours (`rlhf train-reward`,
2 steps on examples/preference.jsonl) and TRL's fp32 copy of the GGUF; then, for each thread
count of --threads in turn, runs `rlhf train-policy` (once for each --ours-variant, or plain)
and bench/ppo_trl.py as child processes, one at a time, alternating, --repeats times each, each
for --warmup-steps + --steps PPO steps, and prints a table for that thread count. A step's time leaves out
model loading; the warm-up steps are left out of the medians where a side gives each step's
time (TRL always; ours when its summary or logs have them, else its own median over all steps,
said in the output). Peak RSS is each child's ru_maxrss (os.wait4), so loading counts too, the
same way on both sides.

Prompts: texts from examples/prompts.jsonl joined until each is longer than P tokens, so both
sides keep exactly P tokens (the last ones) of every prompt; B * (warm-up + steps) different
prompts. Both sides sample up to T tokens and stop a response at EOS (a batch goes on until its
last response stops); each side's mean response length and fraction of responses stopped by EOS
are printed with the times.

Phases of a step: generate, score, logprobs, train. Ours: time/generate, time/score (the reward
model's scoring), time/logprobs (reference log-probs and, when computed apart, the old policy
log-probs and values) and time/train of OUT/logs/metrics.jsonl; a binary that logs no
time/logprobs counts that work in time/score (its logprobs column reads "-"). TRL: see
bench/ppo_trl.py (generate = batch_generation; logprobs = the policy's log-probs from the
generation logits and the reference forward; score = the value and reward forwards; train =
the rest).

Variants: --ours-variant NAME=ARGS (repeatable) runs train-policy again with the extra flags
ARGS, as a column of its own with its ratios to TRL; the first variant (or plain ours) is the
headline. Goals printed with the tables: time per step TRL/ours >= 2 (ours twice as fast), peak
memory ours/TRL <= 0.5. The last line of output is
`ppo_step_speedup_vs_trl X.XX peak_rss_ratio Y.YY` for the headline at 2 threads (or at the
last thread count when 2 is not among them); nan where a side is missing.
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
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TIMEOUT = 0  # seconds a child may run (0 = no limit)
CACHE = os.environ.get("RLHF_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                                     "rlhf")
PHASES = ("generate", "score", "logprobs", "train")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", default=os.path.join(CACHE, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--prompt-source", default=os.path.join(ROOT, "examples", "prompts.jsonl"),
                    help="JSONL of {\"input_text\"} whose texts are joined into the prompts")
    ap.add_argument("--batch-size", type=int, default=8, help="B: prompts a step")
    ap.add_argument("--micro-batch-size", type=int, default=0, help="M: sequences a forward/backward (0 = B)")
    ap.add_argument("--prompt-length", type=int, default=64, help="P")
    ap.add_argument("--target-length", type=int, default=32, help="T")
    ap.add_argument("--steps", type=int, default=3, help="timed PPO steps")
    ap.add_argument("--warmup-steps", type=int, default=1, help="PPO steps before them, left out of the medians")
    ap.add_argument("--ppo-epochs", type=int, default=4)
    ap.add_argument("--lora-rank", type=int, default=1)
    ap.add_argument("--kl-coeff", type=float, default=0.1)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                    help="thread counts, each measured in turn (both sides), a table each (default: 1 2)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each side; medians over all their timed steps")
    ap.add_argument("--trl-value-model", choices=["lora", "full"], default="lora",
                    help="TRL's value model: LoRA rank r on q/v + head (default), or all weights (TRL's own)")
    ap.add_argument("--reward-model", help="ours: a reward model folder (default: made here by train-reward)")
    ap.add_argument("--ours-args", default="", help="more options for rlhf train-policy, every variant (one string; an option given "
                    "here replaces the benchmark's own)")
    ap.add_argument("--ours-variant", action="append", default=[], metavar="NAME=ARGS",
                    help="run ours also (or instead of plain) with the extra train-policy options ARGS (shell "
                    "words; may be empty; an option given here replaces the benchmark's own), as column "
                    "NAME; repeatable; the first is the headline")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--python", default=os.path.join(HERE, ".venv-ppo", "bin", "python"),
                    help="Python with TRL 0.29.1 (bench/run_ppo.sh makes bench/.venv-ppo)")
    ap.add_argument("--skip-ours", action="store_true", help="run only TRL (testing)")
    ap.add_argument("--skip-trl", action="store_true", help="run only ours (testing)")
    ap.add_argument("--timeout", type=float, default=0, help="kill a run that takes longer (seconds; 0 = no limit)")
    ap.add_argument("--workdir", help="keep the prompts, reward model and run folders here (default: a temp folder)")
    ap.add_argument("--json", action="store_true", help="also print every run's figures as JSON lines")
    a = ap.parse_args()
    a.micro_batch_size = a.micro_batch_size or a.batch_size
    if a.batch_size % a.micro_batch_size:
        sys.exit("--batch-size must be a multiple of --micro-batch-size")
    variants = []
    for v in a.ours_variant:
        name, eq, args = v.partition("=")
        if not eq or not name.strip():
            sys.exit(f"--ours-variant {v!r}: expected NAME=ARGS (ARGS may be empty)")
        if name in (n for n, _ in variants) or name == "TRL":
            sys.exit(f"--ours-variant {v!r}: the name {name!r} is taken")
        variants.append((name, shlex.split(args)))
    a.variants = variants or [("rlhf", [])]
    return a


def run_child(cmd, log_path):
    """Runs cmd to completion; returns (seconds, peak RSS in KiB, stdout)."""
    with open(log_path + ".out", "w") as out, open(log_path + ".err", "w") as err:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT)
        timer = threading.Timer(TIMEOUT, p.kill) if TIMEOUT else None
        if timer:
            timer.start()
        _, status, usage = os.wait4(p.pid, 0)
        seconds = time.perf_counter() - t
        if timer:
            timer.cancel()
        code = os.waitstatus_to_exitcode(status)
    with open(log_path + ".out") as f:
        stdout = f.read()
    if code != 0:
        with open(log_path + ".err") as f:
            tail = f.read()[-3000:]
        sys.exit(f"failed ({code}): {' '.join(cmd)}\n{tail}")
    return seconds, usage.ru_maxrss, stdout


def hf_folder(a):
    sys.path.insert(0, HERE)
    import reward_trl
    return reward_trl.hf_cache_dir(argparse.Namespace(hf_cache=None, gguf=a.gguf))


def make_prompts(a, folder, tok):
    """B * (warm-up + steps) texts, each longer than P tokens: the source texts joined in turn,
    each prompt starting at another text and going on until it has P + 8 tokens or more."""
    with open(a.prompt_source, encoding="utf-8") as f:
        src = [json.loads(line)["input_text"].strip() for line in f if line.strip()]
    n = a.batch_size * (a.warmup_steps + a.steps)
    rows = []
    for i in range(n):
        parts, k = [], i
        while True:
            parts.append(src[k % len(src)])
            k += 1 + i // len(src)  # later rounds take other orders, so the prompts differ
            text = "\n\n".join(parts)
            if tok is None and len(text) > 6 * (a.prompt_length + 8):
                break
            if tok is not None and len(tok(text, add_special_tokens=False)["input_ids"]) >= a.prompt_length + 8:
                break
        rows.append(text)
    path = os.path.join(folder, "prompts.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for t in rows:
            f.write(json.dumps({"input_text": t}) + "\n")
    return path, rows


def check_tokens(a, tok, rows, n=4):
    """ours (`rlhf tokenize`) and the HF tokenizer TRL is given must give the same ids."""
    bad = 0
    for text in rows[:n]:
        out = subprocess.run([os.path.join(a.build, "rlhf"), "tokenize", "--model", a.gguf, "--text", text],
                             capture_output=True, text=True, check=True).stdout.split()
        bad += [int(x) for x in out] != tok(text, add_special_tokens=False)["input_ids"]
    if bad:
        print(f"# WARNING: {bad} of {min(n, len(rows))} prompts tokenize differently in rlhf and in the HF tokenizer",
              flush=True)


def make_reward_model(a, folder):
    out = os.path.join(folder, "reward-model")
    if os.path.exists(os.path.join(out, "summary.json")):
        return out
    cmd = [os.path.join(a.build, "rlhf"), "train-reward", "--preference-dataset",
           os.path.join(ROOT, "examples", "preference.jsonl"), "--output", out, "--large-model-reference", a.gguf,
           "--prompt-format", "raw", "--reward-model-train-steps", "2", "--batch-size", "4",
           "--micro-batch-size", "4", "--threads", str(max(a.threads)), "--no-progress"]
    run_child(cmd, out)
    return out


def policy_help(a):
    try:
        return subprocess.run([os.path.join(a.build, "rlhf"), "train-policy", "--help"], capture_output=True,
                              text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def step_metrics(out):
    """Our per-step records (logs/metrics.jsonl: time/step, time/generate, time/score,
    time/logprobs, time/train, response_length, eos_fraction, ...), in step order; [] when absent."""
    path = os.path.join(out, "logs", "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    return sorted((r for r in recs if "time/step" in r), key=lambda r: r.get("step", 0))


def without_options(cmd, names):
    """cmd less the options in names and their values (a word not starting with "-" after one),
    so that --ours-args and a variant's options replace the benchmark's own (the CLI takes each
    option once)."""
    out, skip = [], False
    for w in cmd:
        if skip and not w.startswith("-"):
            continue
        skip = w.split("=", 1)[0] in names
        if not skip:
            out.append(w)
    return out


def run_ours(a, prompts, rm, folder, i, prompt_format, threads, variant):
    name, extra = variant
    out = os.path.join(folder, f"ours-{''.join(c if c.isalnum() or c in '-_.' else '_' for c in name)}-t{threads}-{i}")
    shutil.rmtree(out, ignore_errors=True)
    cmd = [os.path.join(a.build, "rlhf"), "train-policy", "--prompt-dataset", prompts, "--reward-model", rm,
           "--output", out, "--large-model-reference", a.gguf,
           "--reinforcement-learning-train-steps", str(a.warmup_steps + a.steps), "--batch-size", str(a.batch_size),
           "--micro-batch-size", str(a.micro_batch_size), "--prompt-sequence-length", str(a.prompt_length),
           "--target-sequence-length", str(a.target_length), "--ppo-epochs", str(a.ppo_epochs),
           "--lora-rank", str(a.lora_rank), "--kl-coeff", str(a.kl_coeff), "--temperature", str(a.temperature),
           "--threads", str(threads), "--dtype", "fp32", "--seed", str(a.seed), "--no-progress"]
    if prompt_format:
        cmd += ["--prompt-format", "raw"]
    more = shlex.split(a.ours_args) + extra
    cmd = without_options(cmd, {w.split("=", 1)[0] for w in more if w.startswith("--")}) + more
    wall, rss, _ = run_child(cmd, out)
    with open(os.path.join(out, "summary.json")) as f:
        s = json.load(f)
    recs = step_metrics(out)
    w = a.warmup_steps
    r = {"impl": "rlhf", "variant": name, "extra_args": extra, "threads": threads, "steps": s.get("steps"), "peak_rss_kib": rss, "wall_seconds": round(wall, 1),
         "own_peak_rss_bytes": s.get("peak_rss_bytes"), "step_seconds_median_all": s.get("step_seconds_median"),
         "step_seconds": [x["time/step"] for x in recs],
         "phase_seconds": [{p: x.get(f"time/{p}") for p in PHASES} for x in recs],
         "response_length": [x.get("response_length") for x in recs],
         "eos_fraction": [x.get("eos_fraction") for x in recs]}
    if len(recs) > w:
        r["warmup_left_out"] = True
        timed = slice(w, None)
    else:  # no per-step records: our own median over all steps
        r["warmup_left_out"] = False
        timed = slice(0, None)
        if not recs:
            r["step_seconds"] = [s["step_seconds_median"]]
            if s.get("phase_seconds_median"):
                r["phase_seconds"] = [s["phase_seconds_median"]]
    r["timed_step_seconds"] = r["step_seconds"][timed]
    r["timed_phase_seconds"] = r["phase_seconds"][timed]
    r["timed_response_length"] = r["response_length"][timed]
    r["timed_eos_fraction"] = r["eos_fraction"][timed]
    return r


def run_trl(a, prompts, folder, i, threads):
    out = os.path.join(folder, f"trl-t{threads}-{i}")
    cmd = [a.python, os.path.join(HERE, "ppo_trl.py"), "--prompts", prompts, "--gguf", a.gguf,
           "--steps", str(a.warmup_steps + a.steps), "--batch-size", str(a.batch_size),
           "--micro-batch-size", str(a.micro_batch_size), "--prompt-length", str(a.prompt_length),
           "--target-length", str(a.target_length), "--ppo-epochs", str(a.ppo_epochs),
           "--lora-rank", str(a.lora_rank), "--kl-coeff", str(a.kl_coeff), "--temperature", str(a.temperature),
           "--value-model", a.trl_value_model, "--seed", str(a.seed), "--threads", str(threads),
           "--output-dir", out]
    wall, rss, stdout = run_child(cmd, out)
    r = json.loads(stdout.strip().splitlines()[-1])
    w = a.warmup_steps
    timed = slice(w, None) if len(r["step_seconds"]) > w else slice(0, None)
    r.update(peak_rss_kib=rss, wall_seconds=round(wall, 1), warmup_left_out=len(r["step_seconds"]) > w,
             timed_step_seconds=r["step_seconds"][timed], timed_phase_seconds=r["phase_seconds"][timed],
             timed_response_length=r["response_length"][timed], timed_eos_fraction=r["eos_fraction"][timed])
    return r


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def step_med(runs):
    return med([x for r in runs for x in r["timed_step_seconds"]])


def phase_med(runs, p):
    return med([x.get(p) for r in runs for x in r.get("timed_phase_seconds") or []])


def print_table(a, threads, ours, trl):
    """One table: a column and a ratio to TRL for each variant of ours, then TRL and the goal."""
    def fmt(v, unit=""):
        return "-" if v is None else f"{v:.4g}{unit}"

    def ratio(x, y):
        return x / y if x and y else None

    names = list(ours) if not a.skip_ours else []
    rows = []  # (label, [(value, ratio) per variant], TRL value, goal, goal met by a ratio)
    t = step_med(trl)
    rows.append(("s/step", [(fmt(step_med(ours[n])), ratio(t, step_med(ours[n]))) for n in names], fmt(t), ">= 2x",
                 lambda r: r >= 2))
    for p in PHASES:
        t = phase_med(trl, p)
        rows.append((f"  {p}", [(fmt(phase_med(ours[n], p)), ratio(t, phase_med(ours[n], p))) for n in names], fmt(t),
                     "", None))
    t = med([x["peak_rss_kib"] for x in trl])

    def mib(v):
        return "-" if v is None else f"{v / 1024:.0f} MiB"
    rows.append(("peak RSS", [(mib(med([x["peak_rss_kib"] for x in ours[n]])),
                               ratio(med([x["peak_rss_kib"] for x in ours[n]]), t)) for n in names], mib(t),
                 "<= 0.5x", lambda r: r <= 0.5))
    for key, label in (("timed_response_length", "response tokens"), ("timed_eos_fraction", "stopped at EOS")):
        rows.append((label, [(fmt(med([x for r in ours[n] for x in r.get(key) or []])), None) for n in names],
                     fmt(med([x for r in trl for x in r.get(key) or []])), "", None))
    w = max([10] + [len(n) for n in names])
    print(f"## {threads} thread{'s' if threads != 1 else ''}")
    print(f"{'':16} " + "".join(f"{n:>{w}} {'ratio':>7} " for n in names) + f"{'TRL':>10} {'goal':>8}")
    for label, cols, tv, goal, test in rows:
        line = f"{label:16} "
        for v, r in cols:
            rs = "" if r is None and label in ("response tokens", "stopped at EOS") else \
                "-" if r is None else f"{r:.2f}x"
            line += f"{v:>{w}} {rs:>7} "
        met = [n for n, (_, r) in zip(names, cols) if test and r is not None and test(r)]
        line += f"{tv:>10} {goal:>8}"
        if met:
            line += "  met: " + ", ".join(met) if len(names) > 1 else "  met"
        print(line.rstrip())
    print("# s/step: median seconds of a PPO step (generation, log-probs, scoring, 4 epochs of updates; no "
          "loading); ratio TRL/ours (how many times faster ours is). generate/score/logprobs/train: the step's "
          "parts (ours: score = the reward model, logprobs = reference and old-policy log-probs and values; "
          "TRL: logprobs = the reference forward and the log-probs of the generation logits, score = value and "
          "reward forwards; train = the rest). peak RSS: ours/TRL, each whole process. response tokens: mean "
          "tokens a response, EOS included (T at most); stopped at EOS: fraction of responses that ended with "
          "EOS before T (medians over the timed steps).")
    for n in names:
        if ours[n] and not all(x["warmup_left_out"] for x in ours[n]):
            print(f"# {n} gave no per-step times: its figure is its own median over all steps, warm-up included")
        if ours[n] and phase_med(ours[n], "logprobs") is None and phase_med(ours[n], "score") is not None:
            print(f"# {n} logs no time/logprobs: its score holds its log-probs and values too")
    sys.stdout.flush()


def main():
    global TIMEOUT
    a = parse_args()
    TIMEOUT = a.timeout
    if not a.skip_ours and not os.access(os.path.join(a.build, "rlhf"), os.X_OK):
        sys.exit(f"{a.build}/rlhf not built (or pass --skip-ours)")
    help_text = "" if a.skip_ours else policy_help(a)
    if not a.skip_ours and "--reward-model" not in help_text:
        sys.exit(f"{a.build}/rlhf has no train-policy command (or pass --skip-ours)")
    if not a.skip_trl and not os.access(a.python, os.X_OK):
        sys.exit(f"{a.python} missing: bench/run_ppo.sh makes bench/.venv-ppo (TRL 0.29.1)")
    folder = a.workdir or tempfile.mkdtemp(prefix="ppo_bench_")
    os.makedirs(folder, exist_ok=True)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    settings = (f"B {a.batch_size}, micro batch {a.micro_batch_size}, P {a.prompt_length}, T {a.target_length}, "
                f"{a.ppo_epochs} PPO epochs, 1 minibatch, LoRA rank {a.lora_rank} on q/v, kl {a.kl_coeff}, "
                f"temperature {a.temperature}, {a.warmup_steps} warm-up + {a.steps} timed steps, {a.repeats} run(s) "
                f"a side, seed {a.seed}, fp32, threads {' then '.join(map(str, a.threads))}; TRL value model: "
                f"{a.trl_value_model}; {cpu}")
    print("# PPO step, rlhf train-policy vs TRL PPOTrainer")
    print("# " + settings, flush=True)

    tok = None
    if not a.skip_trl:  # GGUF -> fp32 safetensors once, outside the runs measured
        subprocess.run([a.python, os.path.join(HERE, "ppo_trl.py"), "--prompts", "-", "--gguf", a.gguf,
                        "--prepare-only"], check=True, cwd=ROOT, stderr=subprocess.DEVNULL)
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(hf_folder(a))
    prompts, rows = make_prompts(a, folder, tok)
    rm = None
    if not a.skip_ours:
        if tok is not None:
            check_tokens(a, tok, rows)
        rm = a.reward_model or make_reward_model(a, folder)

    if not a.skip_ours:
        print("# ours: " + "; ".join(f"{n} = train-policy {' '.join(shlex.split(a.ours_args) + x)}".rstrip()
                                     for n, x in a.variants), flush=True)
    results = []  # (threads, {variant: [runs]}, [TRL runs])
    for threads in a.threads:
        ours, trl = {n: [] for n, _ in a.variants}, []
        for i in range(a.repeats):
            if not a.skip_ours:
                for v in a.variants:
                    o = run_ours(a, prompts, rm, folder, i, "--prompt-format" in help_text, threads, v)
                    ours[v[0]].append(o)
                    print(f"# {v[0]} {threads}t run {i + 1}: {json.dumps(o)}" if a.json else
                          f"# {v[0]} {threads}t run {i + 1}: steps {o['timed_step_seconds']} s, "
                          f"{o['wall_seconds']} s in all", flush=True)
            if not a.skip_trl:
                t = run_trl(a, prompts, folder, i, threads)
                trl.append(t)
                print(f"# trl {threads}t run {i + 1}: {json.dumps(t)}" if a.json else
                      f"# trl {threads}t run {i + 1}: steps {t['step_seconds']} s, {t['wall_seconds']} s in all",
                      flush=True)
        results.append((threads, ours, trl))
        print_table(a, threads, ours, trl)

    print(json.dumps({"settings": settings, "runs": [{"threads": th, "rlhf": o, "trl": t} for th, o, t in results]}))
    th, ours, trl = next((r for r in results if r[0] == 2), results[-1])
    head = ours[a.variants[0][0]]
    o, t = step_med(head), step_med(trl)
    speed = t / o if o and t else float("nan")
    o, t = med([x["peak_rss_kib"] for x in head]), med([x["peak_rss_kib"] for x in trl])
    rss = o / t if o and t else float("nan")
    if not a.workdir:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"ppo_step_speedup_vs_trl {speed:.2f} peak_rss_ratio {rss:.2f}", flush=True)


if __name__ == "__main__":
    main()
