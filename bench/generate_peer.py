"""The same generation work as bench_generate, done by transformers' generate (the peer).

Greedy, a fixed number of new tokens, the chat-formatted prompt repeated `batch` times, median
tokens/s of several runs after a warm-up. Prints one JSON line.
"""
import argparse
import json
import os
import statistics
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ap = argparse.ArgumentParser()
ap.add_argument("--gguf", required=True)
ap.add_argument("--dtype", default="fp32")
ap.add_argument("--device", default="cpu")
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--new-tokens", type=int, default=64)
ap.add_argument("--repeats", type=int, default=5)
ap.add_argument("--threads", type=int, default=0)
ap.add_argument("--prompt", default="Write a short story about a robot who learns to paint.")
a = ap.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)
dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[a.dtype]
folder, fname = os.path.dirname(a.gguf), os.path.basename(a.gguf)
tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=dtype).to(a.device).eval()
text = tok.apply_chat_template([{"role": "user", "content": a.prompt}], tokenize=False, add_generation_prompt=True)
ids = tok(text, return_tensors="pt").input_ids.repeat(a.batch, 1).to(a.device)
mask = torch.ones_like(ids)


def run():
    with torch.no_grad():
        return model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=a.new_tokens,
                              min_new_tokens=a.new_tokens, pad_token_id=0)


run()
rates = []
for _ in range(a.repeats):
    if a.device != "cpu":
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = run()
    if a.device != "cpu":
        torch.cuda.synchronize()
    rates.append((out.shape[1] - ids.shape[1]) * a.batch / (time.perf_counter() - t))
print(json.dumps({"impl": "transformers", "batch": a.batch, "dtype": a.dtype, "device": a.device,
                  "prompt_tokens": ids.shape[1], "new_tokens": a.new_tokens,
                  "tokens_per_s": round(statistics.median(rates), 2)}))
