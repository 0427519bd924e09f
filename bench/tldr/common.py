"""Shared pieces of the TL;DR experiment: paths, the model in transformers (dequantized once
from the default GGUF), prompt formatting exactly as `rlhf` encodes it, batched sampling."""
import json
import os
import time

SHARED = os.environ.get("TLDR_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared"))
DATA = os.path.join(SHARED, "data", "external", "tldr-sft-dove", "test.jsonl")
OUT = os.environ.get("TLDR_OUT", "/tmp/tldr")
GGUF = os.path.expanduser(os.environ.get("TLDR_GGUF", "~/.cache/rlhf/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
HF_DIR = os.path.join(OUT, "model-hf")

INSTRUCTION = "Summarize in less than 50 words."
SUFFIX = " [summary]: "        # the seed's prompts: the post, then " [summary]: "
WORD_LIMIT = 50
PROMPT_LEN = 256               # --prompt-sequence-length: the last 256 ids of the formatted prompt
TARGET_LEN = 96                # new tokens sampled (--target-sequence-length)


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path, rows):
    """Atomic: a temp file renamed into place."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def words(text):
    return len(text.split())


def fix_pretokenizer(folder):
    """transformers' GGUF conversion gives SmolLM2 the plain GPT-2 pre-tokenizer; the model's
    own ("smollm") first splits digits one by one. Put it back so the ids are the model's."""
    from gguf import GGUFReader
    field = GGUFReader(GGUF).fields.get("tokenizer.ggml.pre")
    pre = bytes(field.parts[field.data[0]]).decode() if field else ""
    if pre not in ("smollm", "starcoder"):
        return
    path = os.path.join(folder, "tokenizer.json")
    with open(path, encoding="utf-8") as f:
        tj = json.load(f)
    tj["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)
    os.replace(path + ".tmp", path)


def load_model():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.set_num_threads(int(os.environ.get("TLDR_THREADS", "2")))
    if not os.path.exists(os.path.join(HF_DIR, "config.json")):
        d, name = os.path.split(GGUF)
        tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
        # the weights are plain fp32 once loaded; drop the GGUF marker that blocks save_pretrained
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp = HF_DIR + ".tmp"
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        fix_pretokenizer(tmp)
        os.replace(tmp, HF_DIR)
    tok = AutoTokenizer.from_pretrained(HF_DIR)
    model = AutoModelForCausalLM.from_pretrained(HF_DIR, dtype=torch.float32).eval()
    return tok, model


def stop_ids(tok):
    """What `rlhf` stops on: the tokenizer's EOS and the chat end-of-turn tokens it knows
    (for SmolLM2 both are <|im_end|>; <|endoftext|> is not a stop, it is the pad)."""
    ids = {tok.eos_token_id}
    vocab = tok.get_vocab()
    for t in ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>"):
        if t in vocab:
            ids.add(vocab[t])
    return sorted(i for i in ids if i is not None)


def prompt_ids(tok, input_text, fmt, instruction=INSTRUCTION, keep=PROMPT_LEN):
    """The formatted prompt's ids as rlhf's encoder makes them, cut from the left to `keep`."""
    content = (instruction + "\n\n" + input_text) if instruction else input_text
    if fmt == "chat":
        text = tok.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                       add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False)["input_ids"]
    else:
        ids = tok(content, add_special_tokens=True)["input_ids"]  # BOS only if the tokenizer adds one
    return ids[-keep:], len(ids)


def sample(tok, model, id_lists, temps, max_new, batch_size=16, seed=0):
    """Completions of every prompt, one per entry of `temps` (0 = greedy): each batch of prompts
    (left-padded, sorted by length) is prefilled once and its KV cache repeated, then decoded
    token by token; rows that hit a stop id leave the batch. Returns per prompt a list (one per
    temperature) of (new ids without the stop id, stopped on a stop id)."""
    import torch
    stops = torch.tensor(stop_ids(tok))
    pad = next(i for i in [tok.pad_token_id or 0] + list(range(16)) if i not in stops.tolist())
    k = len(temps)
    order = sorted(range(len(id_lists)), key=lambda i: len(id_lists[i]))
    res = [None] * len(id_lists)
    for b in range(0, len(order), batch_size):
        idx = order[b:b + batch_size]
        gen = torch.Generator().manual_seed(seed * 1000003 + b)
        L = max(len(id_lists[i]) for i in idx)
        ids = torch.full((len(idx), L), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), L), dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, L - len(id_lists[i]):] = torch.tensor(id_lists[i])
            mask[r, L - len(id_lists[i]):] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
            cache = out.past_key_values
            if k > 1:
                cache.batch_repeat_interleave(k)
            logits = out.logits[:, -1].repeat_interleave(k, 0)
            mask = mask.repeat_interleave(k, 0)
            last = pos[:, -1].repeat_interleave(k, 0)
            temp = torch.tensor([float(t) for t in temps] * len(idx))
            rows = torch.arange(len(idx) * k)          # which (prompt, temperature) each live row is
            toks = [[] for _ in range(len(idx) * k)]
            stopped = [False] * (len(idx) * k)
            for step in range(max_new):
                greedy = logits.argmax(-1)
                t = temp.clamp(min=1e-6)[:, None]
                drawn = torch.multinomial(torch.softmax(logits / t, -1), 1, generator=gen)[:, 0]
                nxt = torch.where(temp == 0, greedy, drawn)
                is_stop = torch.isin(nxt, stops)
                for r, tk, st in zip(rows.tolist(), nxt.tolist(), is_stop.tolist()):
                    if st:
                        stopped[r] = True
                    else:
                        toks[r].append(tk)
                live = (~is_stop).nonzero()[:, 0]
                if len(live) == 0 or step == max_new - 1:
                    break
                if len(live) < len(rows):
                    cache.batch_select_indices(live)
                    rows, mask, last, temp, nxt = rows[live], mask[live], last[live], temp[live], nxt[live]
                mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=torch.long)], 1)
                last = last + 1
                out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=last[:, None],
                            past_key_values=cache, use_cache=True)
                logits = out.logits[:, -1]
        for r, i in enumerate(idx):
            res[i] = [(toks[r * k + j], stopped[r * k + j]) for j in range(k)]
    return res


class Timer:
    def __init__(self):
        self.t = time.perf_counter()

    def __call__(self):
        return time.perf_counter() - self.t


def torch_threads():
    import torch
    return torch.get_num_threads()
