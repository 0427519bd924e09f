"""Prompts of the seed's form from the TL;DR test split: the post (the `instruction` field,
stripped), then " [summary]: " (the title and subreddit are left out, as in the seed's
prompts). The first --train rows are the training prompts (preference labels and RL), the last
--heldout rows the held-out ones, which keep the reference summary under `gold_response`
(rlhf reads only `input_text`)."""
import argparse
import json
import os
import sys

SUFFIX = " [summary]: "


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path, rows):
    """Atomic: a temp file renamed into place."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", required=True, help="tldr-sft-dove test.jsonl")
    ap.add_argument("--out", required=True, help="folder for prompts_train.jsonl and prompts_heldout.jsonl")
    ap.add_argument("--train", type=int, default=400, help="training prompts: the first rows")
    ap.add_argument("--heldout", type=int, default=100, help="held-out prompts: the last rows")
    a = ap.parse_args()
    rows = read_jsonl(a.data)
    if len(rows) < a.train + a.heldout:
        sys.exit(f"{a.data}: {len(rows)} rows, {a.train + a.heldout} needed")
    prompts = [{"input_text": r["instruction"].strip() + SUFFIX} for r in rows]
    train = prompts[:a.train]
    held = [dict(p, gold_response=r["gold_response"]) for p, r in zip(prompts[-a.heldout:], rows[-a.heldout:])]
    # held out last: its presence marks the stage done
    write_jsonl(os.path.join(a.out, "prompts_train.jsonl"), train)
    write_jsonl(os.path.join(a.out, "prompts_heldout.jsonl"), held)
    print(f"prompts: {len(train)} training, {len(held)} held out -> {a.out}")


if __name__ == "__main__":
    main()
