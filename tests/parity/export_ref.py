"""What other tools see in the files `rlhf export` writes, for the export tests.

  export_ref.py JOBS.json

JOBS.json is a list of jobs, run in order in one process (transformers loads once):
  {"mode": "causal", "model": DIR, "ids": [[..]], "out": FILE}
      transformers AutoModelForCausalLM from a folder: logits float32 [B, T, V] to FILE.
  {"mode": "causal_gguf", "model": FILE.gguf, "ids": [[..]], "out": FILE}
      the same, loaded by transformers from a GGUF file (its own dequantization and rotary
      un-permutation).
  {"mode": "seqcls", "model": DIR, "ids": [[..]], "out": FILE}
      AutoModelForSequenceClassification: logits float32 [B, num_labels] to FILE.
  {"mode": "gguf_info", "model": FILE.gguf, "out": FILE.json}
      the gguf package's GGUFReader: tensors (name, type, shape in GGUF order) and the
      scalar metadata values.
  {"mode": "tokenize", "model": DIR, "texts": [..], "out": FILE.json}
      HF tokenizers (tokenizer.json alone, no special tokens added) and transformers'
      AutoTokenizer (with special tokens) on each text: {"raw": [[ids]], "auto": [[ids]]}.
Rows of "ids" have one length (no padding).
"""
import json
import os
import sys

import numpy as np


def logits_causal(job, gguf):
    import torch
    from transformers import AutoModelForCausalLM
    if gguf:
        model = AutoModelForCausalLM.from_pretrained(os.path.dirname(job["model"]), gguf_file=os.path.basename(job["model"]),
                                                     dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(job["model"], dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        out = model(input_ids=torch.tensor(job["ids"])).logits.float()
    out.numpy().astype(np.float32).tofile(job["out"])


def logits_seqcls(job):
    import torch
    from transformers import AutoModelForSequenceClassification
    model = AutoModelForSequenceClassification.from_pretrained(job["model"], dtype=torch.float32).eval()
    with torch.no_grad():
        out = model(input_ids=torch.tensor(job["ids"])).logits.float()
    out.numpy().astype(np.float32).tofile(job["out"])


def gguf_info(job):
    from gguf import GGUFReader, GGUFValueType
    r = GGUFReader(job["model"])
    tensors = [{"name": t.name, "type": t.tensor_type.name, "shape": [int(x) for x in t.shape]} for t in r.tensors]
    fields = {}
    for k, f in r.fields.items():
        if f.types and f.types[0] == GGUFValueType.ARRAY:
            fields[k] = {"array_len": len(f.data)}
            continue
        v = f.contents()
        fields[k] = v if isinstance(v, (str, bool, int, float)) else str(v)
    with open(job["out"], "w") as fh:
        json.dump({"tensors": tensors, "fields": fields}, fh)


def tokenize(job):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer
    raw = Tokenizer.from_file(os.path.join(job["model"], "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(job["model"])
    out = {"raw": [raw.encode(t, add_special_tokens=False).ids for t in job["texts"]],
           "auto": [auto(t)["input_ids"] for t in job["texts"]]}
    with open(job["out"], "w") as fh:
        json.dump(out, fh)


def main():
    with open(sys.argv[1]) as fh:
        jobs = json.load(fh)
    for job in jobs:
        mode = job["mode"]
        if mode == "causal":
            logits_causal(job, gguf=False)
        elif mode == "causal_gguf":
            logits_causal(job, gguf=True)
        elif mode == "seqcls":
            logits_seqcls(job)
        elif mode == "gguf_info":
            gguf_info(job)
        elif mode == "tokenize":
            tokenize(job)
        else:
            raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
