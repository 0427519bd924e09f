"""Prompts of the seed's form from the TL;DR test split: the post, then " [summary]: "
(the title and subreddit are left out, as in the seed's prompts). The first 400 rows are the
training prompts, the last 100 the held-out ones; the held-out rows keep the reference summary
under `gold_response` (rlhf reads only `input_text`)."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=common.DATA)
    ap.add_argument("--out", default=common.OUT)
    ap.add_argument("--train", type=int, default=400)
    ap.add_argument("--heldout", type=int, default=100)
    a = ap.parse_args()
    rows = common.read_jsonl(a.data)
    if len(rows) < a.train + a.heldout:
        sys.exit(f"{a.data}: {len(rows)} rows, {a.train + a.heldout} needed")
    prompts = [{"input_text": r["instruction"].strip() + common.SUFFIX} for r in rows]
    train = prompts[:a.train]
    held = [dict(p, gold_response=r["gold_response"]) for p, r in zip(prompts[-a.heldout:], rows[-a.heldout:])]
    common.write_jsonl(os.path.join(a.out, "prompts_train.jsonl"), train)
    common.write_jsonl(os.path.join(a.out, "prompts_heldout.jsonl"), held)
    print(f"prompts: {len(train)} training, {len(held)} held out -> {a.out}")


if __name__ == "__main__":
    main()
