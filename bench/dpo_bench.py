"""DPO training, `rlhf train-dpo` vs TRL's DPOTrainer: seconds per optimizer step and peak
memory (--mode speed), or the held-out preference accuracy after the same training (--mode
accuracy); the same pairs, token ids, recipe and threads, in one run.

Splits the preference file (the first --train-pairs lines train, the last --heldout-pairs are
held out; a run shorter than an epoch gets just its first steps x batch pairs, so both sides
train on the same pairs, each in its own shuffled order) into a folder, then runs `rlhf
train-dpo` and bench/dpo_trl.py as child processes, one at a time, --repeats times each. Peak
RSS is each child's ru_maxrss (os.wait4), loading included, the same way on both sides.

  --mode speed     a few steps; the median seconds of a step (the warm-up steps left out), the
                   same with each step's share of the reference pass (see below; the headline),
                   the whole training time and each process's peak RSS. Goals: TRL/ours >= 1.5
                   (with the reference), memory ours/TRL <= 0.6.
  --mode accuracy  training, then on the held-out pairs the share with reward(chosen) >
                   reward(rejected), reward = beta * (log pi - log pi_ref) summed over the
                   completion (ours: validation/accuracy at the end; TRL: bench/dpo_trl.py's own
                   scoring). Goal: ours - TRL >= -2 points.

The recipe, both sides: the reward model's token ids (prompt = its last P ids, completion = its
first T-1 ids + EOS), LoRA rank r (alpha r) on q_proj/v_proj, the reference = the base with the
adapter off, loss sigmoid (or --loss-type) with beta, AdamW at 1e-4 x multiplier with warm-up
over ceil(5 %) of the steps then linear decay to 0, clipping at 1.0, batch B pairs in micro
batches of M, fp32 (or --dtype). Ours computes the reference's log-probs of every pair once,
before the first step (so its steps hold no reference forward); TRL's default computes them in
every step (`precompute_ref_log_probs=False`; --trl-precompute-ref gives TRL ours' way). So that
the pass is counted, "s/step with reference" adds to each of our steps B pairs' share of it (its
seconds and pairs from our log's last `reference N/N pair ... elapsed` line; without one, the
time from the process start to the start of step 1, loading included), and the training time
adds the training pairs' share.
Python here is for benchmarking only.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import re
import shutil
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import ppo_bench  # noqa: E402  (run_child, step_metrics, without_options)

CACHE = ppo_bench.CACHE


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["speed", "accuracy"], default="speed")
    ap.add_argument("--data", default="/work/shared/data/external/hh-rlhf-harmless-base/test.jsonl")
    ap.add_argument("--train-pairs", type=int, default=2000, help="the first N lines train")
    ap.add_argument("--heldout-pairs", type=int, help="the last N lines are held out (accuracy 312, speed 16)")
    ap.add_argument("--gguf", default=os.path.join(CACHE, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--steps", type=int, help="optimizer steps (accuracy: 0 = one epoch; speed: 4)")
    ap.add_argument("--warmup-steps", type=int, default=1, help="speed: steps left out of the step medians")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--micro-batch-size", type=int, default=8)
    ap.add_argument("--lora-rank", type=int, default=8)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--loss-type", default="sigmoid", choices=["sigmoid", "ipo", "hinge"])
    ap.add_argument("--lr-multiplier", type=float, default=1.0, help="lr = 1e-4 x this")
    ap.add_argument("--prompt-length", type=int, default=128, help="P")
    ap.add_argument("--target-length", type=int, default=64, help="T")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="both sides")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each side; medians")
    ap.add_argument("--ours-variant", action="append", default=[], metavar="NAME=ARGS",
                    help="run ours also (or instead of plain) with the extra train-dpo options ARGS, as column NAME "
                    "(e.g. bf16=\"--dtype auto\"); repeatable; the first is the headline")
    ap.add_argument("--trl-precompute-ref", action="store_true",
                    help="TRL computes the reference log-probs once before training, as ours does")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--python", default=os.path.join(ROOT, ".venv", "bin", "python"))
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
    if a.mode == "accuracy":
        a.warmup_steps = 0
    if a.batch_size % a.micro_batch_size:
        sys.exit("--batch-size must be a multiple of --micro-batch-size")
    import shlex
    variants = []
    for v in a.ours_variant:
        name, eq, args = v.partition("=")
        if not eq or not name.strip() or name == "TRL" or name in (n for n, _ in variants):
            sys.exit(f"--ours-variant {v!r}: expected NAME=ARGS with a new NAME")
        variants.append((name, shlex.split(args)))
    a.variants = variants or [("rlhf", [])]
    return a


def split(a, folder):
    with open(a.data, encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    if a.train_pairs + a.heldout_pairs > len(lines):
        sys.exit(f"{a.data}: {len(lines)} pairs, fewer than {a.train_pairs} + {a.heldout_pairs}")
    train, held = os.path.join(folder, "train.jsonl"), os.path.join(folder, "heldout.jsonl")
    with open(train, "w", encoding="utf-8") as f:
        f.writelines(lines[:min(a.train_pairs, a.steps * a.batch_size)])
    with open(held, "w", encoding="utf-8") as f:
        f.writelines(lines[len(lines) - a.heldout_pairs:])
    return train, held


def warmup_steps(steps):  # ours: warmup_ratio 0.05 of the steps, rounded up
    return math.ceil(0.05 * steps)


def first(d, *keys):
    for k in keys:
        if d.get(k) is not None:
            return d[k]
    return None


def seconds(text):
    """"1h02m05s", "3m05s", "12s", "4.5s" -> seconds."""
    total, num = 0.0, ""
    for ch in text:
        if ch.isdigit() or ch == ".":
            num += ch
        elif ch in "hms" and num:
            total += float(num) * {"h": 3600, "m": 60, "s": 1}[ch]
            num = ""
    return total


def reference_pass(err_path, recs, started):
    """Ours' reference pass before the first step: (seconds, pairs) from the last `reference
    N/N pair ... elapsed X` line of its log; else (the time from the process start to the start
    of step 1, loading included, None)."""
    last = None
    with open(err_path, errors="replace") as f:
        for line in f.read().replace("\r", "\n").splitlines():
            m = re.search(r"reference\s+(\d+)/(\d+) pair.*elapsed\s+(\S+)", line)
            if m and m.group(1) == m.group(2):
                last = (seconds(m.group(3)), int(m.group(2)))
    if last:
        return last
    s1 = next((x for x in recs if x.get("step") == 1 and "time/step" in x and "wall_time" in x), None)
    return (s1["wall_time"] - s1["time/step"] - started, None) if s1 else (None, None)


def run_ours(a, train, held, folder, i, variant):
    name, extra = variant
    out = os.path.join(folder, f"ours-{''.join(c if c.isalnum() or c in '-_.' else '_' for c in name)}-{i}")
    shutil.rmtree(out, ignore_errors=True)
    cmd = [os.path.join(a.build, "rlhf"), "train-dpo", "--preference-dataset", train, "--eval-dataset", held,
           "--output", out, "--model", a.gguf, "--prompt-format", "raw", "--train-steps", str(a.steps),
           "--batch-size", str(a.batch_size), "--micro-batch-size", str(a.micro_batch_size),
           "--lora-rank", str(a.lora_rank), "--beta", str(a.beta), "--loss-type", a.loss_type,
           "--learning-rate-multiplier", str(a.lr_multiplier), "--prompt-sequence-length", str(a.prompt_length),
           "--target-sequence-length", str(a.target_length), "--seed", str(a.seed), "--threads", str(a.threads),
           "--dtype", a.dtype, "--validation-every", "0", "--checkpoint-every", str(a.steps), "--no-progress"]
    cmd = ppo_bench.without_options(cmd, {w.split("=", 1)[0] for w in extra if w.startswith("--")}) + extra
    started = time.time()
    wall, rss, _ = ppo_bench.run_child(cmd, out)
    with open(os.path.join(out, "summary.json")) as f:
        s = json.load(f)
    recs = []
    path = os.path.join(out, "logs", "metrics.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            recs = [json.loads(line) for line in f if line.strip()]
    steps = []
    for x in sorted((x for x in recs if "step" in x), key=lambda x: x["step"]):
        t = first(x, "time/step", "train/step_seconds")
        if t is None and first(x, "throughput/pairs_per_second"):
            t = a.batch_size / x["throughput/pairs_per_second"]
        if t is not None:
            steps.append(t)
    w = a.warmup_steps if len(steps) > a.warmup_steps else 0
    ref_s, ref_pairs = reference_pass(out + ".err", recs, started)
    train_pairs = first(s, "train_pairs") or 0
    validation_pairs = first(s, "validation_pairs") or 0
    # The reference pass covers the training and the validation pairs; a step's share of it is
    # B pairs' worth (at its rate over all the pairs it scored).
    per_pair = ref_s / (ref_pairs or (train_pairs + validation_pairs)) if ref_s and (ref_pairs or train_pairs) else None
    timed = steps[w:]
    return {"impl": "rlhf", "variant": name, "extra_args": extra, "summary": s, "step_seconds": steps,
            "timed_step_seconds": timed, "warmup_left_out": w > 0,
            "reference_pass_seconds": ref_s, "reference_pass_pairs": ref_pairs or (train_pairs + validation_pairs),
            "timed_step_seconds_with_reference": [x + per_pair * a.batch_size for x in timed] if per_pair else None,
            "train_seconds": (first(s, "train_seconds") or 0) + (per_pair * train_pairs if per_pair else 0),
            "held_out_accuracy": first(s, "eval/rewards/accuracies", "validation/accuracy", "validation_accuracy"),
            "held_out_margin": first(s, "eval/rewards/margins", "validation/margin", "validation_margin"),
            "peak_rss_kib": rss, "wall_seconds": round(wall, 1)}


def run_trl(a, train, held, folder, i):
    out = os.path.join(folder, f"trl-{i}")
    cmd = [a.python, os.path.join(HERE, "dpo_trl.py"), "--train-file", train, "--gguf", a.gguf,
           "--steps", str(a.steps), "--batch-size", str(a.batch_size), "--micro-batch-size", str(a.micro_batch_size),
           "--prompt-length", str(a.prompt_length), "--target-length", str(a.target_length),
           "--lora-rank", str(a.lora_rank), "--beta", str(a.beta), "--loss-type", a.loss_type,
           "--learning-rate", str(1e-4 * a.lr_multiplier), "--warmup-steps", str(warmup_steps(a.steps)),
           "--seed", str(a.seed), "--threads", str(a.threads), "--dtype", a.dtype, "--output-dir", out,
           "--eval-batch-size", "16"]
    if a.mode == "accuracy":
        cmd += ["--heldout-file", held]
    if a.trl_precompute_ref:
        cmd.append("--precompute-ref")
    wall, rss, stdout = ppo_bench.run_child(cmd, out)
    r = json.loads(stdout.strip().splitlines()[-1])
    w = a.warmup_steps if len(r["step_seconds"]) > a.warmup_steps else 0
    timed = r["step_seconds"][w:]
    if a.trl_precompute_ref and r.get("reference_pass_seconds") and r.get("train_pairs"):
        per_pair = r["reference_pass_seconds"] / r["train_pairs"]
        with_ref = [x + per_pair * a.batch_size for x in timed]
    else:
        with_ref = timed  # each step holds its reference forward
    r.update(peak_rss_kib=rss, wall_seconds=round(wall, 1), timed_step_seconds=timed,
             timed_step_seconds_with_reference=with_ref, warmup_left_out=w > 0)
    return r


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def main():
    a = parse_args()
    ppo_bench.TIMEOUT = a.timeout
    if not a.skip_ours:
        if not os.access(os.path.join(a.build, "rlhf"), os.X_OK):
            sys.exit(f"{a.build}/rlhf not built (or pass --skip-ours)")
        if subprocess.run([os.path.join(a.build, "rlhf"), "train-dpo", "--help"], capture_output=True).returncode:
            sys.exit(f"{a.build}/rlhf has no train-dpo command (or pass --skip-ours)")
    folder = a.workdir or tempfile.mkdtemp(prefix="dpo_bench_")
    os.makedirs(folder, exist_ok=True)
    train, held = split(a, folder)
    used = min(a.train_pairs, a.steps * a.batch_size)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    settings = (f"mode {a.mode}: the first {used} pairs train ({a.steps} steps of {a.batch_size}, "
                f"{a.steps * a.batch_size / used:.2f} epochs), the last {a.heldout_pairs} held out, micro batch "
                f"{a.micro_batch_size}, P {a.prompt_length}, T {a.target_length}, LoRA rank {a.lora_rank} on q/v, "
                f"{a.loss_type} beta {a.beta}, lr {1e-4 * a.lr_multiplier:g} (warm-up {warmup_steps(a.steps)} steps, "
                f"linear decay), seed {a.seed}, {a.dtype}, {a.threads} threads, {a.repeats} run(s) a side"
                + (f", {a.warmup_steps} warm-up step(s) left out of the step medians" if a.mode == "speed" else "")
                + f"; TRL reference: {'once before training' if a.trl_precompute_ref else 'every step'}; {cpu}")
    print("# DPO, rlhf train-dpo vs TRL DPOTrainer")
    print("# " + settings, flush=True)
    if not a.skip_trl:  # GGUF -> fp32 safetensors once, outside the runs measured
        subprocess.run([a.python, os.path.join(HERE, "dpo_trl.py"), "--gguf", a.gguf, "--prepare-only"],
                       check=True, cwd=ROOT, stderr=subprocess.DEVNULL)
    if not a.skip_ours and not a.skip_trl:
        from transformers import AutoTokenizer
        import reward_trl
        tok = AutoTokenizer.from_pretrained(ppo_bench.hf_folder(a))
        ppo_bench.check_tokens(a, tok, [t for row in reward_trl.read_pairs(train)[:3] for t in row], n=9)

    ours = {n: [] for n, _ in a.variants}
    trl = []
    for i in range(a.repeats):
        if not a.skip_ours:
            for v in a.variants:
                o = run_ours(a, train, held, folder, i, v)
                ours[v[0]].append(o)
                print(f"# {v[0]} run {i + 1}: {json.dumps(o)}" if a.json else
                      f"# {v[0]} run {i + 1}: steps {[round(x, 3) for x in o['step_seconds']]} s, "
                      f"{o['wall_seconds']} s in all", flush=True)
        if not a.skip_trl:
            trl.append(run_trl(a, train, held, folder, i))
            print(f"# trl run {i + 1}: {json.dumps(trl[-1])}" if a.json else
                  f"# trl run {i + 1}: steps {trl[-1]['step_seconds']} s, {trl[-1]['wall_seconds']} s in all",
                  flush=True)

    def fmt(v, d=4):
        return "-" if v is None else f"{v:.{d}g}"

    names = list(ours) if not a.skip_ours else []
    w = max([12] + [len(n) for n in names])
    print(f"{'':22} " + "".join(f"{n:>{w}} {'ratio':>7} " for n in names) + f"{'TRL':>12} {'goal':>9}")

    def row(label, key_o, key_t, better, goal=None, test=None, unit=lambda v: fmt(v)):
        tv = key_t(trl)
        line = f"{label:22} "
        met = []
        for n in names:
            ov = key_o(ours[n])
            r = better(ov, tv) if ov is not None and tv is not None else None
            line += f"{unit(ov):>{w}} {'-' if r is None else (f'{r:+.1f}pt' if label.startswith('held-out acc') else f'{r:.2f}x'):>7} "
            if test and r is not None and test(r):
                met.append(n)
        line += f"{unit(tv):>12} {goal or '':>9}"
        if met:
            line += "  met: " + ", ".join(met) if len(names) > 1 else "  met"
        print(line.rstrip())

    def steps_of(runs):
        return med([x for r in runs for x in r["timed_step_seconds"]])

    def steps_ref(runs):
        return med([x for r in runs for x in r.get("timed_step_seconds_with_reference") or []])

    if a.mode == "speed":
        row("s/step", steps_of, steps_of, lambda o, t: t / o)
        row("s/step with reference", steps_ref, steps_ref, lambda o, t: t / o, ">= 1.5x", lambda r: r >= 1.5)
        row("train s (all steps)", lambda rs: med([r["train_seconds"] for r in rs]),
            lambda rs: med([r["train_seconds"] for r in rs]), lambda o, t: t / o)
    else:
        acc = lambda rs: med([r["held_out_accuracy"] for r in rs])  # noqa: E731
        row("held-out accuracy", lambda rs: None if acc(rs) is None else 100 * acc(rs),
            lambda rs: None if acc(rs) is None else 100 * acc(rs), lambda o, t: o - t, ">= -2 pt",
            lambda r: r >= -2, unit=lambda v: "-" if v is None else f"{v:.2f} %")
        row("held-out margin", lambda rs: med([r["held_out_margin"] for r in rs]),
            lambda rs: med([r["held_out_margin"] for r in rs]), lambda o, t: None)
        row("s/step", steps_of, steps_of, lambda o, t: t / o)
    rss = lambda rs: med([r["peak_rss_kib"] for r in rs])  # noqa: E731
    row("peak RSS", rss, rss, lambda o, t: o / t, "<= 0.6x", lambda r: r <= 0.6,
        unit=lambda v: "-" if v is None else f"{v / 1024:.0f} MiB")
    print("# s/step: median seconds of an optimizer step, no loading; ratio TRL/ours. Ours' steps hold no "
          "reference forward: its reference pass scores every pair once before the first step. s/step with "
          "reference: a step plus its B pairs' share of that pass (at the pass's own rate); TRL's steps each hold "
          "their reference forward (with --trl-precompute-ref: the same share of TRL's pass). train s: every step "
          "plus the reference pass over the training pairs. peak RSS: ours/TRL, each whole process.")
    print(json.dumps({"settings": settings, "rlhf": ours, "trl": trl}))
    if not a.workdir:
        shutil.rmtree(folder, ignore_errors=True)
    if a.mode == "speed":
        head = ours[a.variants[0][0]] if names else []
        o, t = steps_ref(head) if head else None, steps_ref(trl) if trl else None
        speed = t / o if o and t else float("nan")
        o, t = rss(head) if head else None, rss(trl) if trl else None
        r = o / t if o and t else float("nan")
        print(f"dpo_step_speedup_vs_trl {speed:.2f} peak_rss_ratio {r:.2f}", flush=True)
    else:
        head = ours[a.variants[0][0]] if names else []
        o, t = (acc(head) if head else None), (acc(trl) if trl else None)
        d = 100 * (o - t) if o is not None and t is not None else float("nan")
        print(f"dpo_heldout_accuracy ours {fmt(o and 100 * o)} trl {fmt(t and 100 * t)} diff_points {d:+.2f}",
              flush=True)


if __name__ == "__main__":
    main()
