"""Which prompt format makes the default model write a summary that ends (a stop id within the
token budget)? Samples the first training prompts in the raw and the chat format, greedy and
at temperatures 0.7 and 1.0 (one prefill per prompt), and prints per setting the share ending
with EOS, word counts, and the same for the prompts that fit in 256 tokens uncut."""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

TEMPS = [0.0, 0.7, 1.0]


def stats(items):
    """items: (words, stopped) pairs."""
    if not items:
        return "-"
    w = [n for n, _ in items]
    wd = [n for n, s in items if s]
    return (f"EOS {sum(s for _, s in items) / len(items):4.0%}, words median {statistics.median(w):5.1f} "
            f"(ended: {statistics.median(wd) if wd else '-'}), ended with <=50 words "
            f"{sum(n <= 50 and s for n, s in items) / len(items):4.0%} (n={len(items)})")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--prompts", default=os.path.join(common.OUT, "prompts_train.jsonl"))
    ap.add_argument("-n", type=int, default=32)
    ap.add_argument("--max-new", type=int, default=common.TARGET_LEN)
    ap.add_argument("--show", type=int, default=4, help="completions printed per setting")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    tok, model = common.load_model()
    rows = common.read_jsonl(a.prompts)
    lens = [common.prompt_ids(tok, r["input_text"], "raw", keep=10**9)[1] for r in rows]
    print(f"raw prompt tokens over {len(rows)} prompts: median {statistics.median(lens)}, max {max(lens)}, "
          f"cut to {common.PROMPT_LEN} (the instruction lost): {sum(n > common.PROMPT_LEN for n in lens) / len(lens):.0%}")
    rows = rows[:a.n]
    for fmt in ("raw", "chat"):
        enc = [common.prompt_ids(tok, r["input_text"], fmt) for r in rows]
        t = common.Timer()
        res = common.sample(tok, model, [ids for ids, _ in enc], TEMPS, a.max_new, batch_size=16, seed=a.seed)
        print(f"\n== {fmt} ({t():.0f} s for {len(rows)} prompts x {len(TEMPS)})")
        for j, temp in enumerate(TEMPS):
            items = [(common.words(tok.decode(r[j][0], skip_special_tokens=True)), r[j][1]) for r in res]
            fit = [it for it, (_, n) in zip(items, enc) if n <= common.PROMPT_LEN]
            cut = [it for it, (_, n) in zip(items, enc) if n > common.PROMPT_LEN]
            print(f"  T={temp}: all: {stats(items)}\n         uncut prompts: {stats(fit)}\n         cut prompts:   {stats(cut)}")
            for r in res[:a.show]:
                ids, s = r[j]
                print(f"    [{'EOS' if s else 'cut'}] {tok.decode(ids)[:300]!r}")


if __name__ == "__main__":
    main()
