"""Reward-model training, rlhf train-reward vs TRL's RewardTrainer: held-out accuracy,
throughput and peak memory, same data, same token ids, same recipe, same threads.

Splits the preference file (first --train-pairs lines train, last --heldout-pairs lines are held
out; a run shorter than an epoch trains on just the first steps x batch lines) into a temp folder, then runs `rlhf train-reward` and bench/reward_trl.py as child processes,
one at a time, alternating, --repeats times each. Each child's peak RSS comes from os.wait4
(ru_maxrss). Figures are medians over the repeats. Ours: DIR/summary.json; TRL: its JSON line.
Both rates cover the training steps only (no loading, no validation); tokens are non-pad tokens.

  --mode accuracy    the hh-rlhf split, one epoch over the training pairs by default
  --mode throughput  a few steps (4 by default), a small held-out set; throughput and memory

Goals printed with the table: throughput ours/TRL >= 1.3, peak memory ours/TRL <= 0.7, accuracy
ours - TRL >= -2 points. Python here is for benchmarking only.
"""
import argparse
import json
import math
import os
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


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["accuracy", "throughput"], default="accuracy")
    ap.add_argument("--data", default="/work/shared/data/external/hh-rlhf-harmless-base/test.jsonl")
    ap.add_argument("--train-pairs", type=int, default=2000, help="the first N lines train")
    ap.add_argument("--heldout-pairs", type=int, help="the last N lines are held out (accuracy 312, throughput 16)")
    ap.add_argument("--gguf", default=os.path.join(CACHE, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--steps", type=int, help="optimizer steps (0 or absent: accuracy one epoch = ceil(train pairs / "
                    "batch), throughput 4)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--micro-batch-size", type=int, default=8)
    ap.add_argument("--lora-rank", type=int, default=4)
    ap.add_argument("--lr-multiplier", type=float, default=1.0)
    ap.add_argument("--prompt-length", type=int, default=256, help="P")
    ap.add_argument("--target-length", type=int, default=64, help="T")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--repeats", type=int, help="runs of each side (accuracy 1, throughput 3); medians")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--python", default=os.path.join(ROOT, ".venv", "bin", "python"))
    ap.add_argument("--trl-gradient-checkpointing", action="store_true",
                    help="TRL's own default (off here: slower, less memory)")
    ap.add_argument("--skip-ours", action="store_true", help="run only TRL (testing)")
    ap.add_argument("--skip-trl", action="store_true", help="run only ours (testing)")
    ap.add_argument("--timeout", type=float, default=0, help="kill a run that takes longer (seconds; 0 = no limit)")
    ap.add_argument("--workdir", help="keep the split files and run folders here (default: a temp folder, removed)")
    ap.add_argument("--json", action="store_true", help="also print every run's figures as JSON lines")
    a = ap.parse_args()
    if a.heldout_pairs is None:
        a.heldout_pairs = 312 if a.mode == "accuracy" else 16
    if not a.steps:
        a.steps = math.ceil(a.train_pairs / a.batch_size) if a.mode == "accuracy" else 4
    if a.repeats is None:
        a.repeats = 1 if a.mode == "accuracy" else 3
    return a


def split(a, folder):
    with open(a.data, encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    if a.train_pairs + a.heldout_pairs > len(lines):
        sys.exit(f"{a.data}: {len(lines)} pairs, fewer than {a.train_pairs} + {a.heldout_pairs}")
    train, held = os.path.join(folder, "train.jsonl"), os.path.join(folder, "heldout.jsonl")
    # Runs shorter than an epoch get only the pairs they train on (the first steps x batch), so both
    # sides see the same pairs (in their own orders) and nothing is read, encoded or scored in vain
    # (ours scores up to 2048 training pairs after training to centre the reward).
    with open(train, "w", encoding="utf-8") as f:
        f.writelines(lines[:min(a.train_pairs, a.steps * a.batch_size)])
    with open(held, "w", encoding="utf-8") as f:
        f.writelines(lines[len(lines) - a.heldout_pairs:])
    return train, held


def run_child(cmd, log_path):
    """Runs cmd to completion; returns (exit status, seconds, peak RSS in KiB, stdout)."""
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
        p.returncode = os.waitstatus_to_exitcode(status)
    with open(log_path + ".out") as f:
        stdout = f.read()
    if p.returncode != 0:
        with open(log_path + ".err") as f:
            tail = f.read()[-3000:]
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{tail}")
    return p.returncode, seconds, usage.ru_maxrss, stdout


def run_ours(a, train, held, folder, i):
    out = os.path.join(folder, f"ours-{i}")
    cmd = [os.path.join(a.build, "rlhf"), "train-reward",
           "--preference-dataset", train, "--eval-dataset", held, "--output", out,
           "--large-model-reference", a.gguf, "--prompt-format", "raw",
           "--reward-model-train-steps", str(a.steps), "--batch-size", str(a.batch_size),
           "--micro-batch-size", str(a.micro_batch_size), "--lora-rank", str(a.lora_rank),
           "--reward-model-learning-rate-multiplier", str(a.lr_multiplier),
           "--prompt-sequence-length", str(a.prompt_length), "--target-sequence-length", str(a.target_length),
           "--seed", str(a.seed), "--threads", str(a.threads), "--dtype", a.dtype,
           "--validation-every", "0", "--checkpoint-every", str(a.steps), "--no-progress"]
    _, wall, rss, _ = run_child(cmd, out)
    with open(os.path.join(out, "summary.json")) as f:
        s = json.load(f)
    after_first = None  # per-step rates from logs/metrics.jsonl, step 1 (warm-up) left out
    try:
        with open(os.path.join(out, "logs", "metrics.jsonl")) as f:
            rates = [json.loads(l).get("throughput/pairs_per_second") for l in f if l.strip()]
        secs = [a.batch_size / r for r in rates if r][1:]
        if secs:
            after_first = len(secs) * a.batch_size / sum(secs)
    except (OSError, ValueError):
        pass
    return {"impl": "rlhf", "held_out_accuracy": s.get("validation/accuracy"),
            "held_out_loss": s.get("validation/loss"), "pairs_per_second": s["pairs_per_second"],
            "tokens_per_second": s["tokens_per_second"], "train_seconds": s["train_seconds"],
            "pairs_per_second_after_first": after_first,
            "steps": s["steps"], "validation_pairs": s.get("validation_pairs"), "peak_rss_kib": rss,
            "wall_seconds": round(wall, 1)}


def run_trl(a, train, held, folder, i):
    out = os.path.join(folder, f"trl-{i}")
    cmd = [a.python, os.path.join(HERE, "reward_trl.py"), "--train-file", train, "--heldout-file", held,
           "--gguf", a.gguf, "--steps", str(a.steps), "--batch-size", str(a.batch_size),
           "--micro-batch-size", str(a.micro_batch_size), "--lora-rank", str(a.lora_rank),
           "--lr-multiplier", str(a.lr_multiplier), "--prompt-length", str(a.prompt_length),
           "--target-length", str(a.target_length), "--seed", str(a.seed), "--threads", str(a.threads),
           "--dtype", a.dtype, "--output-dir", out]
    if a.trl_gradient_checkpointing:
        cmd.append("--gradient-checkpointing")
    _, wall, rss, stdout = run_child(cmd, out)
    r = json.loads(stdout.strip().splitlines()[-1])
    r["peak_rss_kib"] = rss
    r["wall_seconds"] = round(wall, 1)
    return r


def token_facts(a, train, check_ours, pairs=8):
    """Returns the sequence tokens per training pair (prompt + chosen, prompt + rejected, non-pad),
    the unit both tokens/s figures are given in: ours counts a shared prompt once per pair, TRL
    twice, so their own counts differ for the same work. With check_ours, also checks that ours
    (`rlhf tokenize`) and the HF tokenizer TRL is given give the same ids, on the prompts and
    completions of the first training pairs."""
    sys.path.insert(0, HERE)
    import reward_trl
    from transformers import AutoTokenizer
    folder = reward_trl.hf_cache_dir(argparse.Namespace(hf_cache=None, gguf=a.gguf))
    if not os.path.exists(os.path.join(folder, "tokenizer.json")):
        return None
    tok = AutoTokenizer.from_pretrained(folder)
    rows = reward_trl.read_pairs(train)
    if check_ours:
        bad = 0
        for row in rows[:pairs]:
            for text in row:
                out = subprocess.run([os.path.join(a.build, "rlhf"), "tokenize", "--model", a.gguf, "--text", text],
                                     capture_output=True, text=True, check=True).stdout.split()
                bad += [int(x) for x in out] != tok(text, add_special_tokens=False)["input_ids"]
        if bad:
            print(f"# WARNING: {bad} of {3 * min(pairs, len(rows))} texts tokenize differently in rlhf and in "
                  "the HF tokenizer", flush=True)
    enc = reward_trl.encode(tok, rows, a.prompt_length, a.target_length, tok.eos_token_id)
    return sum(len(e["chosen_ids"]) + len(e["rejected_ids"]) for e in enc) / len(enc)


def median(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def main():
    global TIMEOUT
    a = parse_args()
    TIMEOUT = a.timeout
    if a.batch_size % a.micro_batch_size:
        sys.exit("--batch-size must be a multiple of --micro-batch-size")
    if not a.skip_ours and not os.access(os.path.join(a.build, "rlhf"), os.X_OK):
        sys.exit(f"{a.build}/rlhf not built (or pass --skip-ours)")
    folder = a.workdir or tempfile.mkdtemp(prefix="reward_bench_")
    os.makedirs(folder, exist_ok=True)
    train, held = split(a, folder)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    used = min(a.train_pairs, a.steps * a.batch_size)
    settings = (f"mode {a.mode}: training on the first {used} pairs, the last {a.heldout_pairs} held out, "
                f"{a.steps} steps ({a.steps * a.batch_size} pairs, {a.steps * a.batch_size / used:.2f} epochs), "
                f"batch {a.batch_size}, micro batch {a.micro_batch_size}, P {a.prompt_length}, T {a.target_length}, "
                f"LoRA rank {a.lora_rank}, lr {1e-4 * a.lr_multiplier:g}, seed {a.seed}, {a.dtype}, "
                f"{a.threads} threads, {a.repeats} repeat(s); {cpu}")
    print("# reward model, rlhf train-reward vs TRL RewardTrainer")
    print("# " + settings, flush=True)
    if not a.skip_trl:  # GGUF -> fp32 safetensors once, outside the runs measured
        subprocess.run([a.python, os.path.join(HERE, "reward_trl.py"), "--gguf", a.gguf, "--prepare-only"],
                       check=True, cwd=ROOT, stderr=subprocess.DEVNULL)
    tpp = token_facts(a, train, check_ours=not a.skip_ours and not a.skip_trl)
    ours, trl = [], []
    for i in range(a.repeats):
        if not a.skip_ours:
            ours.append(run_ours(a, train, held, folder, i))
            print(f"# rlhf run {i + 1}: {json.dumps(ours[-1])}" if a.json else
                  f"# rlhf run {i + 1}: {ours[-1]['pairs_per_second']:.4g} pairs/s, {ours[-1]['wall_seconds']} s",
                  flush=True)
        if not a.skip_trl:
            trl.append(run_trl(a, train, held, folder, i))
            print(f"# trl run {i + 1}: {json.dumps(trl[-1])}" if a.json else
                  f"# trl run {i + 1}: {trl[-1]['pairs_per_second']:.4g} pairs/s, {trl[-1]['wall_seconds']} s",
                  flush=True)

    for r in ours + trl:  # tokens/s in one unit: sequence tokens (see token_facts)
        r["own_tokens_per_second"] = r["tokens_per_second"]
        if tpp:
            r["tokens_per_second"] = r["pairs_per_second"] * tpp

    def fmt(v, unit=""):
        return "-" if v is None else f"{v:.4g}{unit}"

    rows = []
    acc_o, acc_t = median(ours, "held_out_accuracy"), median(trl, "held_out_accuracy")
    diff = None if acc_o is None or acc_t is None else 100 * (acc_o - acc_t)
    rows.append(("held-out accuracy", fmt(acc_o and 100 * acc_o, "%"), fmt(acc_t and 100 * acc_t, "%"),
                 "-" if diff is None else f"{diff:+.1f} pt", ">= -2 pt", diff is not None and diff >= -2))
    for key, name in (("pairs_per_second", "pairs/s"), ("tokens_per_second", "tokens/s")):
        o, t = median(ours, key), median(trl, key)
        r = o / t if o and t else None
        rows.append((name, fmt(o), fmt(t), "-" if r is None else f"{r:.2f}x", ">= 1.3x", r is not None and r >= 1.3))
    if a.steps > 1:
        o, t = median(ours, "pairs_per_second_after_first"), median(trl, "pairs_per_second_after_first")
        r = o / t if o and t else None
        rows.append(("pairs/s w/o step 1", fmt(o), fmt(t), "-" if r is None else f"{r:.2f}x", ">= 1.3x",
                     r is not None and r >= 1.3))
    o, t = median(ours, "peak_rss_kib"), median(trl, "peak_rss_kib")
    r = o / t if o and t else None
    rows.append(("peak RSS", "-" if o is None else f"{o / 1024:.0f} MiB", "-" if t is None else f"{t / 1024:.0f} MiB",
                 "-" if r is None else f"{r:.2f}x", "<= 0.7x", r is not None and r <= 0.7))
    if a.mode == "throughput":
        rows = rows[1:]
    print(f"{'':18} {'rlhf':>12} {'TRL':>12} {'ours/TRL':>10} {'goal':>9}")
    for name, o, t, r, goal, met in rows:
        print(f"{name:18} {o:>12} {t:>12} {r:>10} {goal:>9}{'  met' if met else ''}")
    if tpp:
        print(f"# tokens/s = pairs/s x {tpp:.1f} sequence tokens a pair (prompt + chosen and prompt + rejected, "
              "non-pad), the same unit for both")
    print(json.dumps({"settings": settings, "sequence_tokens_per_pair": tpp, "rlhf": ours, "trl": trl}))
    if not a.workdir:
        import shutil
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
