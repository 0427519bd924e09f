"""The reward-model training that `rlhf train-reward` does, done by TRL's RewardTrainer (the peer).

Same recipe as ours (DESIGN.md §6): the same token ids (prompt = the last P ids of the prompt,
completion = its first T-1 ids + EOS), LoRA rank r on q_proj/v_proj with alpha = r and no
dropout, a trained scalar head read at the EOS, base frozen, loss -log sigmoid(r_chosen -
r_rejected), AdamW (0.9/0.999, 1e-8, no weight decay), lr 1e-4 x multiplier with linear warm-up
over ceil(5%) of the steps then linear decay to 0, gradient clipping at 1.0, batch B by
accumulating micro batches of M pairs, fp32, no evaluation during training. Afterwards the
held-out accuracy (fraction of pairs with r_chosen > r_rejected) is computed here, in eval mode.

Data: JSONL preference pairs, {"chosen","rejected"} with an implicit prompt (HH-RLHF), or
{"prompt","chosen","rejected"}, or the seed's {"input_text","candidate_0","candidate_1","choice"}.
Either one file split into the first --train-pairs / last --heldout-pairs lines, or separate
--train-file / --heldout-file.

Prints one JSON line (last line of stdout): held_out_accuracy, held_out_loss, pairs_per_second,
tokens_per_second (non-pad tokens), train_seconds (training steps only: from the start of the
first step to the end of the last), steps, and the same rates without the first step (warm-up).
Python here is for benchmarking only; nothing at run time needs it.
"""
import argparse
import json
import math
import os
import resource
import sys
import time


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/work/shared/data/external/hh-rlhf-harmless-base/test.jsonl",
                    help="one JSONL file: the first --train-pairs lines train, the last --heldout-pairs are held out")
    ap.add_argument("--train-file", help="training pairs (instead of splitting --data)")
    ap.add_argument("--heldout-file", help="held-out pairs (instead of splitting --data)")
    ap.add_argument("--train-pairs", type=int, default=2000)
    ap.add_argument("--heldout-pairs", type=int, default=312)
    ap.add_argument("--gguf", default=os.path.join(os.environ.get("RLHF_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rlhf"),
        "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--hf-cache", help="folder for the model converted from the GGUF (made once); default "
                    "~/.cache/rlhf/bench/<gguf name>-hf")
    ap.add_argument("--prepare-only", action="store_true", help="convert the GGUF into --hf-cache and exit")
    ap.add_argument("--steps", type=int, default=0, help="optimizer steps (0 = one epoch: ceil(train pairs / batch))")
    ap.add_argument("--batch-size", type=int, default=32, help="pairs per optimizer step")
    ap.add_argument("--micro-batch-size", type=int, default=8, help="pairs per forward/backward")
    ap.add_argument("--lora-rank", type=int, default=4)
    ap.add_argument("--lr-multiplier", type=float, default=1.0, help="lr = 1e-4 x this")
    ap.add_argument("--prompt-length", type=int, default=512, help="P: prompt ids kept (the last ones)")
    ap.add_argument("--target-length", type=int, default=64, help="T: completion ids kept, EOS included")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32",
                    help="bf16 = TRL's mixed precision (autocast, fp32 master weights)")
    ap.add_argument("--gradient-checkpointing", action="store_true",
                    help="TRL's default; off here (it trades speed for memory)")
    ap.add_argument("--eval-batch-size", type=int, default=0, help="pairs per held-out forward (0 = micro batch)")
    ap.add_argument("--output-dir", default="", help="trainer output folder (default: a temp folder)")
    return ap.parse_args()


# ---- data: the same split into prompt / completions and the same ids as ours -------------------------

def split_implicit(chosen, rejected):
    """HH-RLHF pairs: the prompt is the shared beginning, cut right after its last "Assistant:"
    (else back to its last whitespace); the completions are the rest (their leading space kept)."""
    n, lim = 0, min(len(chosen), len(rejected))
    while n < lim and chosen[n] == rejected[n]:
        n += 1
    common = chosen[:n]
    k = common.rfind("Assistant:")
    if k >= 0:
        cut = k + len("Assistant:")
    else:
        cut = max((i for i, ch in enumerate(common) if ch.isspace()), default=0)
    return chosen[:cut], chosen[cut:], rejected[cut:]


def read_pairs(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            d = json.loads(line)
            if "input_text" in d and "candidate_0" in d:
                c = int(d["choice"])
                rows.append((d["input_text"], d[f"candidate_{c}"], d[f"candidate_{1 - c}"]))
            elif "prompt" in d:
                rows.append((d["prompt"], d["chosen"], d["rejected"]))
            elif "chosen" in d and "rejected" in d:
                rows.append(split_implicit(d["chosen"], d["rejected"]))
            else:
                sys.exit(f"{path}:{line_no}: not a preference pair")
    return rows


def encode(tok, rows, P, T, eos_id):
    out = []
    for prompt, chosen, rejected in rows:
        p = tok(prompt, add_special_tokens=False)["input_ids"][-P:] if P > 0 else []
        c = tok(chosen, add_special_tokens=False)["input_ids"][:T - 1] + [eos_id]
        r = tok(rejected, add_special_tokens=False)["input_ids"][:T - 1] + [eos_id]
        out.append({"chosen_ids": p + c, "rejected_ids": p + r})
    return out


# ---- model ---------------------------------------------------------------------------------------------

def hf_cache_dir(a):
    if a.hf_cache:
        return a.hf_cache
    name = os.path.basename(a.gguf)
    name = name[:-5] if name.endswith(".gguf") else name
    base = os.environ.get("RLHF_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rlhf")
    return os.path.join(base, "bench", name + "-hf")


def fix_pretokenizer(folder, gguf_path):
    """transformers' GGUF tokenizer conversion gives every byte-level BPE the plain GPT-2
    pre-tokenizer; SmolLM2's ("smollm" in the GGUF) first splits each digit alone (HF's
    Digits(individual_digits=True)), so ".\n\n2." is [".", "\n\n", "2", "."], not
    [".", "\n", "\n", "2", "."]. Put the original pre-tokenizer back, so the ids are the model's (and ours)."""
    from gguf import GGUFReader
    field = GGUFReader(gguf_path).fields.get("tokenizer.ggml.pre")
    pre = bytes(field.parts[field.data[0]]).decode() if field else ""
    if pre not in ("smollm", "starcoder"):
        return
    path = os.path.join(folder, "tokenizer.json")
    with open(path, encoding="utf-8") as f:
        tj = json.load(f)
    want = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
    if tj.get("pre_tokenizer") != want:
        tj["pre_tokenizer"] = want
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(tj, f, ensure_ascii=False)
        os.replace(path + ".tmp", path)


def prepare(a):
    """transformers dequantizes a GGUF to fp32 on load; do it once and keep safetensors, so that
    the runs measured load the plain fp32 weights (no dequantization peak in their memory)."""
    folder = hf_cache_dir(a)
    if os.path.exists(os.path.join(folder, "config.json")):
        fix_pretokenizer(folder, a.gguf)
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer
    src, fname = os.path.dirname(os.path.abspath(a.gguf)), os.path.basename(a.gguf)
    tok = AutoTokenizer.from_pretrained(src, gguf_file=fname)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=fname, dtype="float32")
    # The weights are plain fp32 after loading; drop the GGUF marker that blocks save_pretrained.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = folder + ".tmp"
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    fix_pretokenizer(tmp, a.gguf)
    os.replace(tmp, folder)
    print(f"converted {a.gguf} -> {folder}", file=sys.stderr)
    return folder


def main():
    a = parse_args()
    import torch
    if a.threads:
        torch.set_num_threads(a.threads)
    folder = prepare(a)
    if a.prepare_only:
        return

    import tempfile
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback, set_seed
    from trl import RewardConfig, RewardTrainer

    if a.batch_size % a.micro_batch_size:
        sys.exit("--batch-size must be a multiple of --micro-batch-size")

    tok = AutoTokenizer.from_pretrained(folder)
    eos_id = tok.eos_token_id
    # The sequence-classification model reads the reward at the LAST non-pad token, so the pad
    # must differ from the EOS that ends each completion. SmolLM2's pad is its EOS (<|im_end|>):
    # pad with <|endoftext|> (id 0) instead, or the first other special token.
    pad = "<|endoftext|>" if "<|endoftext|>" in tok.get_vocab() else None
    if pad is None or tok.convert_tokens_to_ids(pad) == eos_id:
        pad = next(t for t in tok.all_special_tokens if tok.convert_tokens_to_ids(t) != eos_id)
    tok.pad_token = pad
    pad_id = tok.pad_token_id
    assert pad_id != eos_id

    if a.train_file:
        train_rows, held_rows = read_pairs(a.train_file), read_pairs(a.heldout_file)
    else:
        rows = read_pairs(a.data)
        train_rows = rows[:a.train_pairs]
        held_rows = rows[len(rows) - a.heldout_pairs:] if a.heldout_pairs else []
    train = encode(tok, train_rows, a.prompt_length, a.target_length, eos_id)
    held = encode(tok, held_rows, a.prompt_length, a.target_length, eos_id)
    steps = a.steps or math.ceil(len(train) / a.batch_size)
    warmup = math.ceil(0.05 * steps)

    set_seed(a.seed)  # the head's initialisation
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = pad_id

    peft_config = LoraConfig(task_type="SEQ_CLS", r=a.lora_rank, lora_alpha=a.lora_rank, lora_dropout=0.0,
                             target_modules=["q_proj", "v_proj"], bias="none")
    out_dir = a.output_dir or tempfile.mkdtemp(prefix="reward_trl_")
    args = RewardConfig(
        output_dir=out_dir,
        max_steps=steps,
        per_device_train_batch_size=a.micro_batch_size,
        gradient_accumulation_steps=a.batch_size // a.micro_batch_size,
        learning_rate=1e-4 * a.lr_multiplier,
        lr_scheduler_type="linear",
        warmup_steps=warmup,
        weight_decay=0.0,
        adam_beta1=0.9,
        adam_beta2=0.999,
        adam_epsilon=1e-8,
        optim="adamw_torch",
        max_grad_norm=1.0,
        seed=a.seed,
        data_seed=a.seed,
        bf16=a.dtype == "bf16",        # RewardConfig turns bf16 on by default
        gradient_checkpointing=a.gradient_checkpointing,  # on by default in RewardConfig
        max_length=None,               # else pairs longer than 1024 tokens are dropped (ours are <= P+T)
        center_rewards_coefficient=None,
        disable_dropout=True,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=max(1, steps // 10),
        report_to="none",
        use_cpu=True,
        dataloader_num_workers=0,
        remove_unused_columns=True,
    )

    stamps, tokens_at = [], []

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            stamps.append(time.perf_counter())
            tokens_at.append(0)

        def on_step_end(self, args, state, control, **kw):
            stamps.append(time.perf_counter())
            tokens_at.append(trainer._total_train_tokens)

    trainer = RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(train), processing_class=tok,
                            peft_config=peft_config, callbacks=[Clock()])
    trainer.model.print_trainable_parameters() if hasattr(trainer.model, "print_trainable_parameters") else None
    t0 = time.perf_counter()
    result = trainer.train()
    wall = time.perf_counter() - t0

    done = len(stamps) - 1
    train_seconds = stamps[-1] - stamps[0]
    pairs = done * a.batch_size
    tokens = tokens_at[-1]
    steady = {}
    if done > 1:
        s = stamps[-1] - stamps[1]
        steady = {"pairs_per_second_after_first": round((done - 1) * a.batch_size / s, 3),
                  "tokens_per_second_after_first": round((tokens - tokens_at[1]) / s, 1)}

    # Held-out accuracy and loss, eval mode, no gradients.
    m = trainer.model
    m.eval()
    eb = a.eval_batch_size or a.micro_batch_size
    correct, loss_sum = 0, 0.0
    t_eval = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(held), eb):
            chunk = held[i:i + eb]
            batch = trainer.data_collator(chunk)
            logits = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
            rc, rr = torch.chunk(logits.float().squeeze(-1), 2)
            correct += int((rc > rr).sum())
            loss_sum += float(-torch.nn.functional.logsigmoid(rc - rr).sum())
    eval_seconds = time.perf_counter() - t_eval

    print(json.dumps({
        "impl": "trl", "trl_version": __import__("trl").__version__,
        "held_out_accuracy": round(correct / len(held), 4) if held else None,
        "held_out_loss": round(loss_sum / len(held), 4) if held else None,
        "held_out_pairs": len(held), "train_pairs": len(train),
        "steps": done, "batch_size": a.batch_size, "micro_batch_size": a.micro_batch_size,
        "lora_rank": a.lora_rank, "learning_rate": 1e-4 * a.lr_multiplier, "warmup_steps": warmup,
        "prompt_length": a.prompt_length, "target_length": a.target_length, "seed": a.seed,
        "threads": torch.get_num_threads(), "dtype": a.dtype, "gradient_checkpointing": a.gradient_checkpointing,
        "pad_id": pad_id, "eos_id": eos_id,
        "train_seconds": round(train_seconds, 3), "train_runtime": round(result.metrics.get("train_runtime", wall), 3),
        "pairs_per_second": round(pairs / train_seconds, 3),
        "tokens_per_second": round(tokens / train_seconds, 1), "train_tokens": tokens,
        **steady,
        "train_loss": round(result.training_loss, 4), "eval_seconds": round(eval_seconds, 2),
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }), flush=True)


if __name__ == "__main__":
    main()
