"""Reference logits from Hugging Face transformers, for the runtime's parity tests.

  logits_ref.py gguf PATH OUT   SmolLM2 (or any llama GGUF) loaded by transformers (weights
                                dequantized by the gguf package); also saved as a safetensors
                                folder so the HF-folder loader is checked on the same weights.
  logits_ref.py tiny OUT        tiny random Llama / Qwen2 / Mistral models written here (untied
                                head, llama3 and linear rope scaling, q/k/v bias, sharded files).

Writes OUT/cases.json: [{name, model, ids: [[..]], mask: [[..]], logits: file, shape}], each
logits file float32 [B, T, V] in C order. A padded batch is left-padded; positions are the
running count of real tokens, as generation uses.
"""
import json
import os
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

torch.manual_seed(0)


def run_case(model, name, model_ref, batch, out, cases):
    width = max(len(x) for x in batch)
    ids = [[0] * (width - len(x)) + x for x in batch]
    mask = [[0] * (width - len(x)) + [1] * len(x) for x in batch]
    ids_t = torch.tensor(ids)
    mask_t = torch.tensor(mask)
    pos = (mask_t.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(input_ids=ids_t, attention_mask=mask_t, position_ids=pos).logits.float()
    fname = f"{name}.f32"
    logits.numpy().astype(np.float32).tofile(os.path.join(out, fname))
    cases.append({"name": name, "model": model_ref, "ids": ids, "mask": mask, "logits": fname,
                  "shape": list(logits.shape)})


def write_tokenizer(folder, vocab_size):
    """A small byte-level BPE tokenizer so the folder is a complete HF model."""
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=min(vocab_size, 300), special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog 0123456789"] * 20, trainer)
    tok.save(os.path.join(folder, "tokenizer.json"))
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}, f)


def gguf_cases(path, out):
    folder, fname = os.path.dirname(path), os.path.basename(path)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    hf_dir = os.path.join(out, "hf")
    # The same (dequantized) weights as a plain safetensors folder.
    os.makedirs(hf_dir, exist_ok=True)
    from safetensors.torch import save_file
    state = {k: v.contiguous() for k, v in model.state_dict().items()
             if not (k == "lm_head.weight" and model.config.tie_word_embeddings)}
    save_file(state, os.path.join(hf_dir, "model.safetensors"))
    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    with open(os.path.join(hf_dir, "config.json"), "w") as f:
        json.dump(cfg, f)
    tok.save_pretrained(hf_dir)
    texts = ["What is the capital of France?",
             "<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n<|im_start|>assistant\n",
             "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
             "Résumé: naïve café — 1234 ü 🙂"]
    batch = [tok.encode(t) for t in texts]
    cases = []
    for i, ids in enumerate(batch):
        run_case(model, f"smollm2_{i}", "gguf", [ids], out, cases)
    run_case(model, "smollm2_padded", "gguf", batch, out, cases)
    for c in cases[-2:]:
        c2 = dict(c)
        c2["name"] = c["name"] + "_hf"
        c2["model"] = "hf"
        cases.append(c2)
    return cases


def tiny_cases(out):
    from transformers import LlamaConfig, Qwen2Config, MistralConfig
    V = 300
    common = dict(vocab_size=V, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    configs = {
        "llama_untied_llama3rope": LlamaConfig(**common, tie_word_embeddings=False, rope_theta=500000.0,
                                               rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                             "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
        "llama_tied_linear": LlamaConfig(**common, tie_word_embeddings=True, rope_theta=10000.0,
                                         rope_scaling={"rope_type": "linear", "factor": 2.0}),
        "qwen2_bias": Qwen2Config(**common, tie_word_embeddings=True, rope_theta=1000000.0),
        "mistral_mha": MistralConfig(**{**common, "num_key_value_heads": 4}, tie_word_embeddings=False),
    }
    cases = []
    gen = torch.Generator().manual_seed(1)
    for name, cfg in configs.items():
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
        with torch.no_grad():  # weights well away from zero so differences would show
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.08)
            for n, p in model.named_parameters():
                if "norm" in n:
                    p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
        folder = os.path.join(out, name)
        shard = "40KB" if name == "qwen2_bias" else "5GB"
        model.save_pretrained(folder, safe_serialization=True, max_shard_size=shard)
        write_tokenizer(folder, V)
        rows = [torch.randint(3, V, (n,), generator=gen).tolist() for n in (9, 5, 1)]
        run_case(model, name, name, [rows[0]], out, cases)
        run_case(model, name + "_padded", name, rows, out, cases)
    return cases


def main():
    mode = sys.argv[1]
    if mode == "gguf":
        out = sys.argv[3]
        os.makedirs(out, exist_ok=True)
        cases = gguf_cases(sys.argv[2], out)
    else:
        out = sys.argv[2]
        os.makedirs(out, exist_ok=True)
        cases = tiny_cases(out)
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(cases, f)


if __name__ == "__main__":
    main()
