"""Two candidate summaries per prompt from the default model, for the preference pairs: the
prompt formatted as `rlhf` formats it (instruction + "\\n\\n" + input_text, in the chat template
or raw, cut from the left to the last 256 ids), then one completion at temperature 0.7 and one
at 1.0 (up to 96 new tokens, stopping at the model's stop id, which is left out of the text)."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--prompts", default=os.path.join(common.OUT, "prompts_train.jsonl"))
    ap.add_argument("--out", default=os.path.join(common.OUT, "candidates.jsonl"))
    ap.add_argument("--format", choices=["chat", "raw"], default="chat")
    ap.add_argument("--instruction", default=common.INSTRUCTION)
    ap.add_argument("--limit", type=int, default=0, help="first N prompts only (0 = all)")
    ap.add_argument("--temperatures", type=float, nargs=2, default=[0.7, 1.0])
    ap.add_argument("--max-new-tokens", type=int, default=common.TARGET_LEN)
    ap.add_argument("--prompt-sequence-length", type=int, default=common.PROMPT_LEN)
    ap.add_argument("--batch-size", type=int, default=16, help="prompts per prefill")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rows = common.read_jsonl(a.prompts)
    if a.limit:
        rows = rows[:a.limit]
    tok, model = common.load_model()
    enc = [common.prompt_ids(tok, r["input_text"], a.format, a.instruction, a.prompt_sequence_length) for r in rows]
    t = common.Timer()
    out = []
    chunk = a.batch_size * 4
    for c in range(0, len(rows), chunk):  # chunks only for progress lines
        res = common.sample(tok, model, [ids for ids, _ in enc[c:c + chunk]], a.temperatures, a.max_new_tokens,
                            batch_size=a.batch_size, seed=a.seed + c)
        for r, (_, n), pair in zip(rows[c:c + chunk], enc[c:c + chunk], res):
            row = {"input_text": r["input_text"], "prompt_tokens": n}
            for j, (ids, stopped) in enumerate(pair):
                row[f"candidate_{j}"] = tok.decode(ids, skip_special_tokens=True)
                row[f"stopped_{j}"] = stopped
                row[f"tokens_{j}"] = len(ids)
                row[f"temperature_{j}"] = a.temperatures[j]
            out.append(row)
        print(f"candidates: {len(out)}/{len(rows)} prompts, {t():.0f} s", file=sys.stderr, flush=True)
    common.write_jsonl(a.out, out)
    n = 2 * len(out)
    ended = sum(r["stopped_0"] + r["stopped_1"] for r in out)
    short = sum(common.words(r[f"candidate_{j}"]) <= common.WORD_LIMIT for r in out for j in (0, 1))
    print(f"candidates: {len(out)} prompts x 2 in {t():.0f} s ({a.format} format, {model.device}, "
          f"{common.torch_threads()} threads); ended with EOS {ended / n:.0%}; <= {common.WORD_LIMIT} words "
          f"{short / n:.0%}; prompts cut to {a.prompt_sequence_length} ids {sum(k > a.prompt_sequence_length for _, k in enc) / len(enc):.0%}"
          f" -> {a.out}")


if __name__ == "__main__":
    main()
