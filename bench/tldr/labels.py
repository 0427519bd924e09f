"""Preference labels by rule, in the seed's format (input_text, candidate_0, candidate_1, choice):
the candidate with at most 50 words wins; when both or neither have at most 50 words, the
shorter one wins. Pairs with equal word counts or an empty candidate are left out. A candidate
cut at the token limit (no EOS) counts as the words it has. Words are whitespace-split tokens."""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def label(c0, c1, limit=common.WORD_LIMIT):
    """(choice, reason) or (None, reason) for a pair left out."""
    w0, w1 = common.words(c0), common.words(c1)
    if w0 == 0 or w1 == 0:
        return None, "empty"
    if (w0 <= limit) != (w1 <= limit):
        return (0 if w0 <= limit else 1), "limit"
    if w0 == w1:
        return None, "equal"
    return (0 if w0 < w1 else 1), "shorter (both under)" if w0 <= limit else "shorter (both over)"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--candidates", default=os.path.join(common.OUT, "candidates.jsonl"))
    ap.add_argument("--out", default=os.path.join(common.OUT, "preference_train.jsonl"))
    a = ap.parse_args()
    rows = common.read_jsonl(a.candidates)
    out, reasons = [], {}
    chosen_w, rejected_w, chosen_eos, rejected_eos = [], [], 0, 0
    for r in rows:
        choice, why = label(r["candidate_0"], r["candidate_1"])
        reasons[why] = reasons.get(why, 0) + 1
        if choice is None:
            continue
        out.append({"input_text": r["input_text"], "candidate_0": r["candidate_0"], "candidate_1": r["candidate_1"],
                    "choice": choice})
        c, l = choice, 1 - choice
        chosen_w.append(common.words(r[f"candidate_{c}"]))
        rejected_w.append(common.words(r[f"candidate_{l}"]))
        chosen_eos += r.get(f"stopped_{c}", False)
        rejected_eos += r.get(f"stopped_{l}", False)
    common.write_jsonl(a.out, out)
    n = len(out)
    print(f"labels: {n} pairs of {len(rows)} -> {a.out}")
    print("  by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])))
    if n:
        print(f"  choice 0 (temperature {rows[0].get('temperature_0', '?')}) {sum(o['choice'] == 0 for o in out) / n:.0%}, "
              f"choice 1 {sum(o['choice'] == 1 for o in out) / n:.0%}")
        print(f"  words: chosen median {statistics.median(chosen_w)} (mean {statistics.mean(chosen_w):.1f}), "
              f"rejected median {statistics.median(rejected_w)} (mean {statistics.mean(rejected_w):.1f}); "
              f"chosen <= {common.WORD_LIMIT} words {sum(w <= common.WORD_LIMIT for w in chosen_w) / n:.0%}")
        print(f"  ended with EOS: chosen {chosen_eos / n:.0%}, rejected {rejected_eos / n:.0%}")


if __name__ == "__main__":
    main()
