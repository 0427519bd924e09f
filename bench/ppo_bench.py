"""One PPO step (rollout, scoring, update), rlhf train-policy vs TRL's PPOTrainer: seconds per
step and peak memory, the same prompts, sizes, recipe and threads, in one run.

Makes (once, outside the figures) the prompt file, a reward model for ours (`rlhf train-reward`,
2 steps on examples/preference.jsonl) and TRL's fp32 copy of the GGUF; then runs
`rlhf train-policy` and bench/ppo_trl.py as child processes, one at a time, alternating,
--repeats times each, each for --warmup-steps + --steps PPO steps. A step's time leaves out
model loading; the warm-up steps are left out of the medians where a side gives each step's
time (TRL always; ours when its summary or logs have them, else its own median over all steps,
said in the output). Peak RSS is each child's ru_maxrss (os.wait4), so loading counts too, the
same way on both sides.

Prompts: texts from examples/prompts.jsonl joined until each is longer than P tokens, so both
sides keep exactly P tokens (the last ones) of every prompt; B * (warm-up + steps) different
prompts. Both sides sample up to T tokens and stop a response at EOS (a batch goes on until its
last response stops); each side's mean response length and fraction of responses stopped by EOS
are printed with the times.

Goals printed with the table: time per step TRL/ours >= 2 (ours twice as fast), peak memory
ours/TRL <= 0.5. Python here is for benchmarking only.
"""
import argparse
import json
import os
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
PHASES = ("generate", "score", "train")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", default=os.path.join(CACHE, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--prompt-source", default=os.path.join(ROOT, "examples", "prompts.jsonl"),
                    help="JSONL of {\"input_text\"} whose texts are joined into the prompts")
    ap.add_argument("--batch-size", type=int, default=8, help="B: prompts a step")
    ap.add_argument("--micro-batch-size", type=int, default=0, help="M: sequences a forward/backward (0 = B)")
    ap.add_argument("--prompt-length", type=int, default=128, help="P")
    ap.add_argument("--target-length", type=int, default=48, help="T")
    ap.add_argument("--steps", type=int, default=3, help="timed PPO steps")
    ap.add_argument("--warmup-steps", type=int, default=1, help="PPO steps before them, left out of the medians")
    ap.add_argument("--ppo-epochs", type=int, default=4)
    ap.add_argument("--lora-rank", type=int, default=1)
    ap.add_argument("--kl-coeff", type=float, default=0.1)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=1, help="runs of each side; medians over all their timed steps")
    ap.add_argument("--trl-value-model", choices=["lora", "full"], default="lora",
                    help="TRL's value model: LoRA rank r on q/v + head (default), or all weights (TRL's own)")
    ap.add_argument("--reward-model", help="ours: a reward model folder (default: made here by train-reward)")
    ap.add_argument("--ours-args", default="", help="more options for rlhf train-policy (one string)")
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
           "--micro-batch-size", "4", "--threads", str(a.threads), "--no-progress"]
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
    time/train, response_length, eos_fraction, ...), in step order; [] when absent."""
    path = os.path.join(out, "logs", "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    return sorted((r for r in recs if "time/step" in r), key=lambda r: r.get("step", 0))


def run_ours(a, prompts, rm, folder, i, prompt_format):
    out = os.path.join(folder, f"ours-{i}")
    shutil.rmtree(out, ignore_errors=True)
    cmd = [os.path.join(a.build, "rlhf"), "train-policy", "--prompt-dataset", prompts, "--reward-model", rm,
           "--output", out, "--large-model-reference", a.gguf,
           "--reinforcement-learning-train-steps", str(a.warmup_steps + a.steps), "--batch-size", str(a.batch_size),
           "--micro-batch-size", str(a.micro_batch_size), "--prompt-sequence-length", str(a.prompt_length),
           "--target-sequence-length", str(a.target_length), "--ppo-epochs", str(a.ppo_epochs),
           "--lora-rank", str(a.lora_rank), "--kl-coeff", str(a.kl_coeff), "--temperature", str(a.temperature),
           "--threads", str(a.threads), "--dtype", "fp32", "--seed", str(a.seed), "--no-progress"]
    if prompt_format:
        cmd += ["--prompt-format", "raw"]
    cmd += a.ours_args.split()
    wall, rss, _ = run_child(cmd, out)
    with open(os.path.join(out, "summary.json")) as f:
        s = json.load(f)
    recs = step_metrics(out)
    w = a.warmup_steps
    r = {"impl": "rlhf", "steps": s.get("steps"), "peak_rss_kib": rss, "wall_seconds": round(wall, 1),
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


def run_trl(a, prompts, folder, i):
    out = os.path.join(folder, f"trl-{i}")
    cmd = [a.python, os.path.join(HERE, "ppo_trl.py"), "--prompts", prompts, "--gguf", a.gguf,
           "--steps", str(a.warmup_steps + a.steps), "--batch-size", str(a.batch_size),
           "--micro-batch-size", str(a.micro_batch_size), "--prompt-length", str(a.prompt_length),
           "--target-length", str(a.target_length), "--ppo-epochs", str(a.ppo_epochs),
           "--lora-rank", str(a.lora_rank), "--kl-coeff", str(a.kl_coeff), "--temperature", str(a.temperature),
           "--value-model", a.trl_value_model, "--seed", str(a.seed), "--threads", str(a.threads),
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
                f"a side, seed {a.seed}, fp32, {a.threads} threads; TRL value model: {a.trl_value_model}; {cpu}")
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

    ours, trl = [], []
    for i in range(a.repeats):
        if not a.skip_ours:
            ours.append(run_ours(a, prompts, rm, folder, i, "--prompt-format" in help_text))
            o = ours[-1]
            print(f"# rlhf run {i + 1}: {json.dumps(o)}" if a.json else
                  f"# rlhf run {i + 1}: steps {o['timed_step_seconds']} s, {o['wall_seconds']} s in all", flush=True)
        if not a.skip_trl:
            trl.append(run_trl(a, prompts, folder, i))
            t = trl[-1]
            print(f"# trl run {i + 1}: {json.dumps(t)}" if a.json else
                  f"# trl run {i + 1}: steps {t['step_seconds']} s, {t['wall_seconds']} s in all", flush=True)

    def step_med(runs):
        return med([x for r in runs for x in r["timed_step_seconds"]])

    def phase_med(runs, p):
        return med([x.get(p) for r in runs for x in r.get("timed_phase_seconds") or []])

    def fmt(v, unit=""):
        return "-" if v is None else f"{v:.4g}{unit}"

    rows_out = []
    o, t = step_med(ours), step_med(trl)
    r = t / o if o and t else None
    rows_out.append(("s/step", fmt(o), fmt(t), "-" if r is None else f"{r:.2f}x", ">= 2x", r is not None and r >= 2))
    for p in PHASES:
        po, pt = phase_med(ours, p), phase_med(trl, p)
        pr = pt / po if po and pt else None
        rows_out.append((f"  {p}", fmt(po), fmt(pt), "-" if pr is None else f"{pr:.2f}x", "", False))
    o, t = med([x["peak_rss_kib"] for x in ours]), med([x["peak_rss_kib"] for x in trl])
    r = o / t if o and t else None
    rows_out.append(("peak RSS", "-" if o is None else f"{o / 1024:.0f} MiB", "-" if t is None else f"{t / 1024:.0f} MiB",
                     "-" if r is None else f"{r:.2f}x", "<= 0.5x", r is not None and r <= 0.5))
    for key, name in (("timed_response_length", "response tokens"), ("timed_eos_fraction", "stopped at EOS")):
        o = med([x for r in ours for x in r.get(key) or []])
        t = med([x for r in trl for x in r.get(key) or []])
        rows_out.append((name, fmt(o), fmt(t), "", "", False))
    print(f"{'':16} {'rlhf':>10} {'TRL':>10} {'ratio':>8} {'goal':>8}")
    for name, o, t, r, goal, met in rows_out:
        print(f"{name:16} {o:>10} {t:>10} {r:>8} {goal:>8}{'  met' if met else ''}")
    print("# s/step: median seconds of a PPO step (generation, scoring, 4 epochs of updates; no loading); "
          "ratio TRL/ours (how many times faster ours is). generate/score/train: the step's parts (TRL: "
          "score = reference, value and reward forwards; train = the rest). peak RSS: ours/TRL, each whole "
          "process. response tokens: mean tokens a response, EOS included (T at most); stopped at EOS: "
          "fraction of responses that ended with EOS before T (medians over the timed steps).")
    if ours and not all(x["warmup_left_out"] for x in ours):
        print("# ours gave no per-step times: its figure is its own median over all steps, warm-up included")
    print(json.dumps({"settings": settings, "rlhf": ours, "trl": trl}))
    if not a.workdir:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
