"""The summary of bench/gpu/check.sh: reads what its phases left in WORK (phase times, the
test report, bench_generate's JSON lines, the trainers' logs/metrics.jsonl and summary.json, the
sampled GPU memory), writes one JSON file and prints a short table. Standard library only.

Model FLOPs (the usual convention): 6 N per token for a forward and backward pass, 2 N for a
forward pass, N = the model's parameters. MFU = those FLOPs per second / the GPU's dense bf16
peak, looked up by the name nvidia-smi gives (unknown GPUs and the CPU: no MFU)."""
import argparse
import json
import os
import statistics
import sys

# Dense bf16 tensor-core peaks, TFLOP/s (NVIDIA's data sheets; "with sparsity" halved). The first
# entry whose words all appear in the name wins, so the more specific names come first.
BF16_PEAK_TFLOPS = [
    (("H100", "PCIE"), 756.0),
    (("H100", "NVL"), 835.0),
    (("GH200",), 989.0),
    (("H200",), 989.0),
    (("H100",), 989.0),
    (("A100",), 312.0),
    (("L40S",), 362.0),
]


def bf16_peak(gpu_name):
    name = (gpu_name or "").upper()
    for words, tflops in BF16_PEAK_TFLOPS:
        if all(w in name for w in words):
            return tflops
    return None


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_jsonl(path):
    rows = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    rows.append(json.loads(line))
    except (OSError, ValueError):
        pass
    return rows


def steady(values):
    """Median of the values after the first (warm-up) one, or of all when there is one."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.median(values[1:] if len(values) > 1 else values)


def peak_mib(work, phase):
    try:
        with open(os.path.join(work, f"mem.{phase}.log")) as f:
            vals = [int(x) for x in f.read().split() if x.strip().isdigit()]
        return max(vals) if vals else None
    except OSError:
        return None


def phases(work):
    out = {}
    try:
        with open(os.path.join(work, "phases.tsv")) as f:
            for line in f:
                name, seconds, status = line.rstrip("\n").split("\t")
                out[name] = {"seconds": float(seconds), "status": status}
    except OSError:
        pass
    return out


def tests(work):
    report = read_json(os.path.join(work, "tests.json"))
    if report is None:
        return None
    passed, failed, skipped = [], [], []
    for suite in report.get("testsuites", []):
        for t in suite.get("testsuite", []):
            name = f'{suite["name"]}.{t["name"]}'
            if t.get("failures"):
                failed.append({"name": name, "failures": [x.get("failure", "") for x in t["failures"]]})
            elif t.get("result") == "SKIPPED":
                msg = t.get("skipped", {}).get("message", "") if isinstance(t.get("skipped"), dict) else ""
                skipped.append({"name": name, "message": msg.strip()})
            else:
                passed.append({"name": name, "seconds": float(str(t.get("time", "0")).rstrip("s") or 0)})
    return {"passed": passed, "failed": failed, "skipped": skipped}


def mfu(flops_per_second, peak_tflops):
    if flops_per_second is None or peak_tflops is None:
        return None
    return flops_per_second / (peak_tflops * 1e12)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--mode", choices=["cuda", "cpu"], required=True)
    ap.add_argument("--gpu-name", default="")
    ap.add_argument("--build-dir", default="")
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--test-filter", default="")
    ap.add_argument("--commit", default="")
    ap.add_argument("--ccache", default="")
    ap.add_argument("--sizes", default="", help="name=value pairs separated by spaces")
    a = ap.parse_args()
    work = a.work
    sizes = {}
    for kv in a.sizes.split():
        k, v = kv.split("=", 1)
        sizes[k] = float(v) if "." in v else int(v)

    peak = bf16_peak(a.gpu_name) if a.mode == "cuda" else None
    model = read_json(os.path.join(work, "model.json")) or {}
    n = model.get("parameters")
    result = {
        "mode": a.mode,
        "device": {
            "name": a.gpu_name if a.mode == "cuda" else "cpu",
            "bf16_peak_tflops": peak,
            "peak_source": "bench/gpu/summarize.py BF16_PEAK_TFLOPS (dense)" if peak else "unknown",
        },
        "commit": a.commit,
        "dtype": a.dtype,
        "build": {"dir": a.build_dir, "ccache": a.ccache or None,
                  "seconds": phases(work).get("build", {}).get("seconds")},
        "phases": phases(work),
        "sizes": sizes,
        "model": model,
        "flops_convention": "6 N per token forward+backward, 2 N forward only; N = model parameters",
        "memory_source": "nvidia-smi memory.used of the GPU (all processes, the caching allocator's reserve "
                         "and the CUDA context included), sampled every 100 ms during the phase"
                         if a.mode == "cuda" else "no GPU; peak RSS from the trainers' summary.json",
    }
    t = tests(work)
    if t is not None:
        result["tests"] = {"device": a.mode, "filter": a.test_filter, **t}

    gen = {}
    for b in (1, 64):
        g = read_json(os.path.join(work, f"gen_b{b}.json"))
        if g:
            g["peak_gpu_mib"] = peak_mib(work, f"gen_b{b}")
            gen[f"batch_{b}"] = g
    result["generate"] = gen

    # Reward model: tokens are each pair's real tokens with its shared prompt once (as packed).
    # With gradient checkpointing the recomputed forward is not counted (model FLOPs).
    for key, folder, phase in (("reward", "rm", "reward"), ("reward_gradient_checkpointing", "rm_gc", "reward_gc")):
        rm_rows = [r for r in read_jsonl(os.path.join(work, folder, "logs/metrics.jsonl")) if "rank_loss" in r]
        rm_summary = read_json(os.path.join(work, folder, "summary.json")) or {}
        if not rm_rows:
            continue
        pps = steady([r.get("throughput/pairs_per_second") for r in rm_rows])
        tps = steady([r.get("throughput/tokens_per_second") for r in rm_rows])
        flops = 6 * n * tps if (n and tps) else None
        result[key] = {
            "steps": len(rm_rows),
            "pairs_per_second": pps,
            "tokens_per_second": tps,
            "model_tflops_per_second": flops / 1e12 if flops else None,
            "mfu": mfu(flops, peak),
            "peak_gpu_mib": peak_mib(work, phase),
            "peak_rss_bytes": rm_summary.get("peak_rss_bytes"),
            "note": "medians of the steps after the first",
        }

    # PPO: the update runs ppo_epochs x (policy + value) forward+backward passes over the rollouts;
    # scoring runs the reward model, the policy, the reference (kl_coeff > 0) and the value model
    # forward.
    ppo_rows = [r for r in read_jsonl(os.path.join(work, "ppo/logs/metrics.jsonl")) if "time/step" in r]
    ppo_summary = read_json(os.path.join(work, "ppo/summary.json")) or {}
    if ppo_rows:
        def med(key):
            return steady([r.get(key) for r in ppo_rows])

        B, P = sizes.get("ppo_b"), sizes.get("ppo_p")
        length = med("response_length")
        seq_tokens = B * (P + length) if (B and P and length is not None) else None
        train_s, score_s, gen_s = med("time/train"), med("time/score"), med("time/generate")
        epochs = sizes.get("ppo_epochs", 4)
        forwards = 4 if sizes.get("kl_coeff", 0.1) > 0 else 3
        train_flops = epochs * 2 * 6 * n * seq_tokens / train_s if (n and seq_tokens and train_s) else None
        score_flops = forwards * 2 * n * seq_tokens / score_s if (n and seq_tokens and score_s) else None
        result["ppo"] = {
            "steps": len(ppo_rows),
            "step_seconds": med("time/step"),
            "generate_seconds": gen_s,
            "score_seconds": score_s,
            "train_seconds": train_s,
            "response_length": length,
            "rollout_tokens_per_second": B * length / gen_s if (B and length and gen_s) else None,
            "train_model_tflops_per_second": train_flops / 1e12 if train_flops else None,
            "train_mfu": mfu(train_flops, peak),
            "score_model_tflops_per_second": score_flops / 1e12 if score_flops else None,
            "score_mfu": mfu(score_flops, peak),
            "peak_gpu_mib": peak_mib(work, "ppo"),
            "peak_rss_bytes": ppo_summary.get("peak_rss_bytes"),
            "note": "medians of the steps after the first (the step's own phases: time/generate, "
                    "time/score, time/train of logs/metrics.jsonl)",
        }
    mems = [x for x in (peak_mib(work, p) for p in ("tests", "gen_b1", "gen_b64", "reward", "reward_gc", "ppo")) if x]
    result["peak_gpu_mib"] = max(mems) if mems else None

    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print_table(result, a.out)
    failed = [k for k, v in result["phases"].items() if v["status"] != "ok"]
    if t is not None and t["failed"]:
        failed.append("tests")
    return 1 if failed else 0


def fmt(x, spec=".1f", unit=""):
    return "n/a" if x is None else f"{x:{spec}}{unit}"


def pct(x, available):
    if not available:
        return "n/a"
    return "unknown" if x is None else f"{100 * x:.1f} %"


def params(n):
    return f"{n / 1e9:.3f} B" if n >= 1e8 else f"{n / 1e6:.3f} M"


def print_table(r, out_path):
    dev = r["device"]
    m = r["model"]
    on_gpu = r["mode"] == "cuda"
    peak_known = dev["bf16_peak_tflops"] is not None
    head = (f'{dev["name"] or "unknown GPU"}, bf16 peak ' + (f'{dev["bf16_peak_tflops"]:.0f} TFLOP/s' if peak_known else "unknown")
            if on_gpu else "CPU (tiny sizes; MFU n/a)")
    print()
    print(f"bench/gpu/check.sh on {head}")
    if m:
        print(f'model: random Llama-shaped, {m["layers"]} layers x {m["hidden"]} (intermediate {m["intermediate"]}, '
              f'{m["heads"]}/{m["kv_heads"]} heads, vocab {m["vocab"]}), {params(m["parameters"])} parameters, {r["dtype"]}')
    print()
    print(f'{"phase":<10} {"seconds":>8}  status')
    for name, p in r["phases"].items():
        status = p["status"]
        if name == "tests" and "tests" in r:
            t = r["tests"]
            status += f' ({len(t["passed"])} passed, {len(t["failed"])} failed, {len(t["skipped"])} skipped)'
        print(f'{name:<10} {p["seconds"]:>8.1f}  {status}')
    total = sum(p["seconds"] for p in r["phases"].values())
    print(f'{"total":<10} {total:>8.1f}')
    if "tests" in r:
        for t in r["tests"]["failed"]:
            print(f'  FAILED  {t["name"]}')
        for t in r["tests"]["skipped"]:
            print(f'  skipped {t["name"]}: {t["message"] or "(no message)"}')
    print()
    mem_label = "peak GPU MiB" if on_gpu else "peak RSS MiB"
    print(f'{"figure":<44} {"value":>22}  {mem_label}')
    for b in (1, 64):
        g = r["generate"].get(f"batch_{b}")
        print(f'{f"generation tokens/s, batch {b}":<44} {fmt(g and g.get("tokens_per_s")):>22}  '
              f'{fmt(g and g.get("peak_gpu_mib"), "d") if on_gpu else "n/a"}')
    for key, label in (("reward", "reward model"), ("reward_gradient_checkpointing", "  with gradient checkpointing")):
        if key not in r and key != "reward":
            continue
        rm = r.get(key, {})
        rm_mem = rm.get("peak_gpu_mib") if on_gpu else (rm.get("peak_rss_bytes") or 0) / 2**20 or None
        print(f'{label + " pairs/s (tokens/s)":<44} {fmt(rm.get("pairs_per_second"), ".2f") + " (" + fmt(rm.get("tokens_per_second"), ".0f") + ")":>22}  '
              f'{fmt(rm_mem, ".0f")}')
        print(f'{label + " MFU":<44} {pct(rm.get("mfu"), on_gpu):>22}')
    pp = r.get("ppo", {})
    pp_mem = pp.get("peak_gpu_mib") if on_gpu else (pp.get("peak_rss_bytes") or 0) / 2**20 or None
    print(f'{"PPO step s":<44} {fmt(pp.get("step_seconds"), ".2f"):>22}  {fmt(pp_mem, ".0f")}')
    print(f'{"  generate / score / train s":<44} '
          f'{fmt(pp.get("generate_seconds"), ".2f") + " / " + fmt(pp.get("score_seconds"), ".2f") + " / " + fmt(pp.get("train_seconds"), ".2f"):>22}')
    print(f'{"  rollout tokens/s":<44} {fmt(pp.get("rollout_tokens_per_second")):>22}')
    print(f'{"  score MFU (forward only)":<44} {pct(pp.get("score_mfu"), on_gpu):>22}')
    print(f'{"  train MFU":<44} {pct(pp.get("train_mfu"), on_gpu):>22}')
    if on_gpu:
        print(f'{"peak GPU memory, any phase (MiB)":<44} {fmt(r.get("peak_gpu_mib"), "d"):>22}')
    print()
    print(f"JSON: {out_path}")


if __name__ == "__main__":
    sys.exit(main())
