"""DPO with TRL's DPOTrainer (the peer of `rlhf train-dpo`), timed per optimizer step.

Settings as ours: the default model (SmolLM2-135M-Instruct, the GGUF dequantized to fp32 once,
as bench/reward_trl.py does), the same token ids as the reward model's pair packing (prompt = the
last P ids of the prompt, completion = its first T-1 ids + EOS; given to TRL pre-tokenized, so it
neither tokenizes nor adds an EOS), LoRA rank r (alpha --lora-alpha, no dropout) on
--lora-targets with the reference = the policy with its adapter disabled, loss --loss-type with
beta and label smoothing, AdamW (0.9/0.999/1e-8, no weight decay) at --learning-rate with linear
warm-up over --warmup-steps then linear decay to 0, gradient clipping at 1.0, a batch of B pairs
by accumulating micro batches of M pairs, fp32 (DPOConfig's bf16 default off), no gradient
checkpointing (DPOConfig's default on: slower, less memory), max_length None (DPOConfig's 1024
cut is moot at P+T), no evaluation during training.

One step = one optimizer step: for each micro batch, the policy's forward/backward over the M
chosen and M rejected sequences and the reference's forward (adapter off) over the same; then
clipping and AdamW. Each step is timed from the end of the previous one (the first from the start
of training; loading, the trainer's set-up and the held-out scoring are outside).

With held-out pairs, scores them after training (eval mode, no gradients): each pair's implicit
rewards beta * (log pi - log pi_ref) of chosen and rejected (log-probs summed over the completion
ids); accuracy = share of pairs with reward(chosen) > reward(rejected).

Prints one JSON line (last line of stdout): step_seconds (each step), their median, with and
without the first, held_out_accuracy, held_out_margin (mean reward(chosen) - reward(rejected)),
train_loss, peak RSS of this process. Python here is for benchmarking only.
"""
import argparse
import json
import math
import os
import resource
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-file", help="training pairs (JSONL, the formats bench/reward_trl.py reads)")
    ap.add_argument("--heldout-file", help="held-out pairs (optional)")
    ap.add_argument("--gguf", default=os.path.join(os.environ.get("RLHF_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rlhf"),
        "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--hf-cache", help="folder of the model converted from the GGUF (made once)")
    ap.add_argument("--prepare-only", action="store_true", help="convert the GGUF into --hf-cache and exit")
    ap.add_argument("--steps", type=int, default=0, help="optimizer steps (0 = one epoch: ceil(pairs / B))")
    ap.add_argument("--batch-size", type=int, default=8, help="B: pairs an optimizer step")
    ap.add_argument("--micro-batch-size", type=int, default=0, help="M: pairs a forward/backward (0 = B)")
    ap.add_argument("--prompt-length", type=int, default=64, help="P: prompt ids kept (the last ones)")
    ap.add_argument("--target-length", type=int, default=32, help="T: completion ids kept, EOS included")
    ap.add_argument("--lora-rank", type=int, default=8)
    ap.add_argument("--lora-alpha", type=float, default=0, help="0 = the rank")
    ap.add_argument("--lora-targets", default="q_proj,v_proj")
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--loss-type", default="sigmoid", choices=["sigmoid", "ipo", "hinge"])
    ap.add_argument("--label-smoothing", type=float, default=0.0,
                    help="sigmoid with label smoothing = TRL's 'robust' loss is not cDPO; given to DPOConfig as is")
    ap.add_argument("--learning-rate", type=float, default=1e-6)
    ap.add_argument("--warmup-steps", type=int, default=0)
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32",
                    help="bf16 = TRL's mixed precision (autocast, fp32 master weights)")
    ap.add_argument("--gradient-checkpointing", action="store_true", help="DPOConfig's default; off here")
    ap.add_argument("--precompute-ref", action="store_true",
                    help="the reference log-probs of every training pair once, before training (as ours), not in "
                    "every step; that pass is counted in train_seconds")
    ap.add_argument("--eval-batch-size", type=int, default=0, help="pairs a held-out forward (0 = M)")
    ap.add_argument("--output-dir", default="", help="trainer output folder (default: a temp folder)")
    return ap.parse_args()


def main():
    a = parse_args()
    sys.path.insert(0, HERE)
    import reward_trl  # the GGUF -> fp32 safetensors conversion, the tokenizer fix, the pair reader
    import torch
    if a.threads:
        torch.set_num_threads(a.threads)
    folder = reward_trl.prepare(argparse.Namespace(hf_cache=a.hf_cache, gguf=a.gguf))
    if a.prepare_only:
        return

    import tempfile
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback, set_seed
    import trl
    from trl import DPOConfig, DPOTrainer

    B, M = a.batch_size, a.micro_batch_size or a.batch_size
    if B % M:
        sys.exit("--batch-size must be a multiple of --micro-batch-size")
    tok = AutoTokenizer.from_pretrained(folder)
    eos_id = tok.eos_token_id
    # Padding sits behind the attention and completion masks; a pad other than the EOS keeps it apart
    # from the EOS that ends each completion, as in bench/reward_trl.py.
    pad = "<|endoftext|>" if "<|endoftext|>" in tok.get_vocab() else None
    if pad is None or tok.convert_tokens_to_ids(pad) == eos_id:
        pad = next(t for t in tok.all_special_tokens if tok.convert_tokens_to_ids(t) != eos_id)
    tok.pad_token = pad
    pad_id = tok.pad_token_id

    def encode(rows):
        out = []
        for prompt, chosen, rejected in rows:
            p = tok(prompt, add_special_tokens=False)["input_ids"][-a.prompt_length:] if a.prompt_length > 0 else []
            c = tok(chosen, add_special_tokens=False)["input_ids"][:a.target_length - 1] + [eos_id]
            r = tok(rejected, add_special_tokens=False)["input_ids"][:a.target_length - 1] + [eos_id]
            out.append({"prompt_ids": p, "chosen_ids": c, "rejected_ids": r})
        return out

    train = encode(reward_trl.read_pairs(a.train_file))
    held = encode(reward_trl.read_pairs(a.heldout_file)) if a.heldout_file else []
    steps = a.steps or math.ceil(len(train) / B)

    set_seed(a.seed)
    policy = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    alpha = a.lora_alpha or a.lora_rank
    peft_config = LoraConfig(task_type="CAUSAL_LM", r=a.lora_rank, lora_alpha=alpha, lora_dropout=0.0,
                             target_modules=a.lora_targets.split(","), bias="none")
    out_dir = a.output_dir or tempfile.mkdtemp(prefix="dpo_trl_")
    args = DPOConfig(
        output_dir=out_dir,
        max_steps=steps,
        per_device_train_batch_size=M,
        gradient_accumulation_steps=B // M,
        learning_rate=a.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=a.warmup_steps,
        weight_decay=0.0,
        adam_beta1=0.9,
        adam_beta2=0.999,
        adam_epsilon=1e-8,
        optim="adamw_torch",
        max_grad_norm=a.max_grad_norm,
        beta=a.beta,
        loss_type=[a.loss_type],
        label_smoothing=a.label_smoothing,
        max_length=None,
        precompute_ref_log_probs=a.precompute_ref,
        bf16=a.dtype == "bf16",
        fp16=False,
        gradient_checkpointing=a.gradient_checkpointing,
        disable_dropout=True,
        seed=a.seed,
        data_seed=a.seed,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    args.bf16 = a.dtype == "bf16"
    args.gradient_checkpointing = a.gradient_checkpointing

    # The pairs come tokenized as ours packs them: TRL's text preparation (prompt extraction, EOS,
    # tokenization) is skipped.
    DPOTrainer._prepare_dataset = lambda self, dataset, *args, **kw: dataset

    ref_pass = [0.0]  # seconds of the reference pass before training (--precompute-ref)
    orig_precompute = DPOTrainer._precompute_ref_logps

    def precompute(self, *args, **kw):
        t = time.perf_counter()
        try:
            return orig_precompute(self, *args, **kw)
        finally:
            ref_pass[0] += time.perf_counter() - t
    DPOTrainer._precompute_ref_logps = precompute

    stamps = []

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            stamps.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            stamps.append(time.perf_counter())

    trainer = DPOTrainer(model=policy, ref_model=None, args=args, train_dataset=Dataset.from_list(train),
                         processing_class=tok, peft_config=peft_config, callbacks=[Clock()])
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    t0 = time.perf_counter()
    result = trainer.train()
    wall = time.perf_counter() - t0
    steps_s = [round(stamps[i + 1] - stamps[i], 3) for i in range(len(stamps) - 1)]
    logs = [h for h in trainer.state.log_history if "loss" in h]

    acc = margin = None
    eval_seconds = 0.0
    if held:
        m = trainer.model
        m.eval()
        eb = a.eval_batch_size or M
        collate = trainer.data_collator
        wins, margins = 0, []
        t = time.perf_counter()

        def seq_logps(batch):
            labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
            out = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels,
                    fused_lm_head=True, use_cache=False)
            return out.log_probs.sum(dim=1)

        with torch.no_grad():
            for i in range(0, len(held), eb):
                batch = collate(held[i:i + eb])
                pol = seq_logps(batch)
                with m.disable_adapter():
                    ref = seq_logps(batch)
                rc, rr = (a.beta * (pol - ref)).float().chunk(2)
                wins += int((rc > rr).sum())
                margins.extend((rc - rr).tolist())
        eval_seconds = time.perf_counter() - t
        acc = wins / len(held)
        margin = statistics.mean(margins)

    def med(xs):
        return round(statistics.median(xs), 3) if xs else None

    print(json.dumps({
        "impl": "trl", "trl_version": trl.__version__, "transformers_version": __import__("transformers").__version__,
        "torch_version": torch.__version__,
        "steps": len(steps_s), "batch_size": B, "micro_batch_size": M, "prompt_length": a.prompt_length,
        "target_length": a.target_length, "lora_rank": a.lora_rank, "lora_alpha": alpha,
        "lora_targets": a.lora_targets, "beta": a.beta, "loss_type": a.loss_type,
        "label_smoothing": a.label_smoothing, "learning_rate": a.learning_rate, "warmup_steps": a.warmup_steps,
        "train_pairs": len(train), "trainable_parameters": trainable, "threads": torch.get_num_threads(),
        "dtype": a.dtype, "gradient_checkpointing": a.gradient_checkpointing, "pad_id": pad_id, "eos_id": eos_id,
        "seed": a.seed,
        "step_seconds": steps_s, "step_seconds_median": med(steps_s), "step_seconds_median_after_first": med(steps_s[1:]),
        "train_seconds": round(wall + ref_pass[0], 3), "reference_pass_seconds": round(ref_pass[0], 3),
        "precompute_ref": a.precompute_ref, "train_loss": round(result.training_loss, 4),
        "first_loss": logs[0]["loss"] if logs else None, "last_loss": logs[-1]["loss"] if logs else None,
        "held_out_pairs": len(held), "held_out_accuracy": None if acc is None else round(acc, 4),
        "held_out_margin": None if margin is None else round(margin, 4), "eval_seconds": round(eval_seconds, 2),
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }), flush=True)


if __name__ == "__main__":
    main()
