"""The bulk-inference work of `rlhf infer`, done by transformers' generate (the peer).

The same prompts (instruction + "\n\n" + input_text, the raw format), tokenized by `rlhf tokenize`
so both sides read the same ids; fixed batches in input order, left padding with an attention
mask, greedy, at most --max-new-tokens, stopping at the same stop ids. Times the generate calls
only (not loading or tokenizing): prompts/s and tokens/s (generated tokens up to and including
the stop token), median of --repeats passes after a warm-up batch. With --compare (the JSONL
`rlhf infer` wrote for the same prompts) it also counts the predictions that are the same text.
Prints one JSON line.
"""
import argparse
import json
import os
import statistics
import subprocess
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ap = argparse.ArgumentParser()
ap.add_argument("--gguf", required=True)
ap.add_argument("--input", required=True, help="prompt JSONL (input_text)")
ap.add_argument("--instruction", default="")
ap.add_argument("--rlhf", default="build/rlhf", help="the rlhf binary (its tokenizer gives the ids)")
ap.add_argument("--batch-size", type=int, default=8)
ap.add_argument("--max-new-tokens", type=int, default=64)
ap.add_argument("--repeats", type=int, default=3)
ap.add_argument("--threads", type=int, default=0)
ap.add_argument("--compare", default="", help="rlhf infer's output for the same prompts")
a = ap.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)

rows = [json.loads(line) for line in open(a.input, encoding="utf-8") if line.strip()]
texts = [(a.instruction + "\n\n" if a.instruction else "") + r["input_text"] for r in rows]
ids_of = {}
for t in texts:
    if t not in ids_of:
        out = subprocess.run([a.rlhf, "tokenize", "--model", a.gguf, "--text", t], check=True, capture_output=True,
                             text=True).stdout
        ids_of[t] = [int(x) for x in out.split()]
prompts = [ids_of[t] for t in texts]

folder, fname = os.path.dirname(a.gguf), os.path.basename(a.gguf)
tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32).eval()
# rlhf's stop ids: the tokenizer's EOS and the end-of-turn tokens the vocabulary has.
stops = {tok.eos_token_id} if tok.eos_token_id is not None else set()
vocab = tok.get_vocab()
stops |= {vocab[t] for t in ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>") if t in vocab}
stops = sorted(stops)
pad = next(i for i in range(len(vocab)) if i not in stops)  # any id that is not a stop id


def batch_tensors(batch):
    width = max(len(p) for p in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, p in enumerate(batch):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    return ids, mask


def generate(batch):
    ids, mask = batch_tensors(batch)
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=a.max_new_tokens,
                             eos_token_id=stops, pad_token_id=pad, temperature=None, top_p=None, top_k=None)
    completions = []
    for row in out[:, ids.shape[1]:].tolist():
        n = next((k + 1 for k, t in enumerate(row) if t in stops), len(row))
        completions.append(row[:n])
    return completions


batches = [prompts[i:i + a.batch_size] for i in range(0, len(prompts), a.batch_size)]
generate(batches[0])  # warm-up
rates, token_rates, completions = [], [], []
for _ in range(a.repeats):
    t = time.perf_counter()
    completions = [c for b in batches for c in generate(b)]
    dt = time.perf_counter() - t
    rates.append(len(prompts) / dt)
    token_rates.append(sum(len(c) for c in completions) / dt)

result = {"impl": "transformers", "prompts": len(prompts), "batch_size": a.batch_size,
          "max_new_tokens": a.max_new_tokens, "threads": torch.get_num_threads(),
          "new_tokens": sum(len(c) for c in completions),
          "prompts_per_s": round(statistics.median(rates), 3), "tokens_per_s": round(statistics.median(token_rates), 2)}
if a.compare:
    ours = [json.loads(line)["prediction"] for line in open(a.compare, encoding="utf-8") if line.strip()]
    theirs = [tok.decode([t for t in c if t not in stops], skip_special_tokens=True) for c in completions]
    result["same_predictions"] = sum(o == t for o, t in zip(ours, theirs))
print(json.dumps(result))
