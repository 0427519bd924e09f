"""GRPO or RLOO with TRL's GRPOTrainer / RLOOTrainer (the peers of `rlhf train-policy --method
grpo|rloo`), timed per step.

Settings as ours: the default model (SmolLM2-135M-Instruct, the GGUF dequantized to fp32 once,
as bench/reward_trl.py does), B prompts a step of exactly P tokens (the driver gives texts whose
tokenization is P ids; checked here), G completions each of at most T tokens sampled at the given
temperature (top-k 0, top-p 1, transformers' generate, no vLLM), cut after the first EOS; the
reward a Python function equal to our rule max-words=N (1.0 when the completion has at most N
whitespace-separated words, else 0.0); LoRA rank r (alpha --lora-alpha, no dropout) on
--lora-targets, the reference (when beta > 0) = the policy with its adapter disabled; beta, loss
type, reward scaling, clipping and iterations as given (the method's TRL defaults otherwise:
GRPO beta 0, loss dapo, scale "group"; RLOO beta 0.05); one optimizer step a generation batch
of B x G completions in micro batches of M (gradient accumulation); AdamW at --learning-rate,
constant; fp32 (the configs' bf16 default off), no gradient checkpointing (on by default: slower,
less memory), no completions logged.

One step = generation of the B x G completions, the rule rewards, log-probs (RLOO: the old
policy's; both: the reference's when beta > 0) and the update (forward/backward of the micro
batches, AdamW). Each step is timed from the end of the previous one (the first from the start of
training; loading and the trainer's set-up are outside). Phases, by wrapping the trainer's own
methods (counted outside autograd only):
  generate = _generate_single_turn;  score = _calculate_rewards;
  logprobs = _get_per_token_logps_and_entropies without gradients (old and reference log-probs);
  train    = the rest (forward/backward/AdamW and the small tensor work between).

Prints one JSON line (last line of stdout): step_seconds (each step) and their medians,
phase_seconds, each step's mean completion length (tokens, EOS included) and mean reward, peak
RSS of this process. Python here is for benchmarking only.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", choices=["grpo", "rloo"], default="grpo")
    ap.add_argument("--prompts", required=True, help="JSONL, one {\"input_text\": ...} a line")
    ap.add_argument("--gguf", default=os.path.join(os.environ.get("RLHF_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rlhf"),
        "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--hf-cache", help="folder of the model converted from the GGUF (made once)")
    ap.add_argument("--prepare-only", action="store_true", help="convert the GGUF into --hf-cache and exit")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=4, help="B: prompts a step")
    ap.add_argument("--num-generations", type=int, default=0, help="G (0 = the method's TRL default: grpo 8, rloo 2)")
    ap.add_argument("--micro-batch-size", type=int, default=0, help="M: completions a forward/backward (0 = B x G)")
    ap.add_argument("--prompt-length", type=int, default=64, help="P: every prompt's ids (checked)")
    ap.add_argument("--target-length", type=int, default=32, help="T: most completion tokens")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--max-words", type=int, default=50, help="the rule: 1.0 if at most this many words, else 0.0")
    ap.add_argument("--lora-rank", type=int, default=8)
    ap.add_argument("--lora-alpha", type=float, default=0, help="0 = the rank")
    ap.add_argument("--lora-targets", default="q_proj,v_proj")
    ap.add_argument("--beta", type=float, default=None, help="KL coefficient (default: the method's TRL default)")
    ap.add_argument("--loss-type", default=None, help="GRPO: grpo, dapo, dr_grpo (default: TRL's, dapo)")
    ap.add_argument("--scale-rewards", default=None, help="GRPO: group, batch, none (default: TRL's, group)")
    ap.add_argument("--epsilon", type=float, default=0.2)
    ap.add_argument("--epsilon-high", type=float, default=None)
    ap.add_argument("--num-iterations", type=int, default=1)
    ap.add_argument("--learning-rate", type=float, default=1e-6)
    ap.add_argument("--no-stop-at-eos", action="store_true", help="always generate T tokens")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--gradient-checkpointing", action="store_true", help="the configs' default; off here")
    ap.add_argument("--output-dir", default="", help="trainer output folder (default: a temp folder)")
    return ap.parse_args()


def main():
    a = parse_args()
    sys.path.insert(0, HERE)
    import reward_trl  # the GGUF -> fp32 safetensors conversion and the tokenizer fix, shared
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
    if a.method == "grpo":
        from trl import GRPOConfig as Config, GRPOTrainer as Trainer
    else:
        from trl import RLOOConfig as Config, RLOOTrainer as Trainer

    G = a.num_generations or (8 if a.method == "grpo" else 2)
    B = a.batch_size
    N = B * G
    M = a.micro_batch_size or N
    if N % M:
        sys.exit("B x G must be a multiple of --micro-batch-size")

    tok = AutoTokenizer.from_pretrained(folder, padding_side="left")
    eos_id = tok.eos_token_id
    with open(a.prompts, encoding="utf-8") as f:
        texts = [json.loads(line)["input_text"] for line in f if line.strip()]
    ids = tok(text=texts)["input_ids"]  # as the trainer tokenizes them
    bad = [len(x) for x in ids if len(x) != a.prompt_length]
    if bad:
        sys.exit(f"{len(bad)} prompts do not tokenize to P = {a.prompt_length} ids (e.g. {bad[0]})")
    if len(texts) < B:
        sys.exit(f"{len(texts)} prompts, fewer than B = {B}")

    rewards_seen = []

    def max_words(completions, **kw):
        r = [1.0 if len(c.split()) <= a.max_words else 0.0 for c in completions]
        rewards_seen.extend(r)
        return r
    max_words.__name__ = f"max_words_{a.max_words}"

    set_seed(a.seed)
    policy = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    alpha = a.lora_alpha or a.lora_rank
    peft_config = LoraConfig(task_type="CAUSAL_LM", r=a.lora_rank, lora_alpha=alpha, lora_dropout=0.0,
                             target_modules=a.lora_targets.split(","), bias="none")
    kw = {}
    if a.beta is not None:
        kw["beta"] = a.beta
    if a.method == "grpo":
        if a.loss_type:
            kw["loss_type"] = a.loss_type
        if a.scale_rewards:
            kw["scale_rewards"] = a.scale_rewards
    gen_kwargs = {"eos_token_id": None} if a.no_stop_at_eos else {}
    out_dir = a.output_dir or tempfile.mkdtemp(prefix=f"{a.method}_trl_")
    args = Config(
        output_dir=out_dir,
        max_steps=a.steps,
        per_device_train_batch_size=M,
        gradient_accumulation_steps=N // M,
        num_generations=G,
        max_completion_length=a.target_length,
        temperature=a.temperature,
        top_p=1.0,
        top_k=0,
        generation_kwargs=gen_kwargs or None,
        epsilon=a.epsilon,
        epsilon_high=a.epsilon_high,
        num_iterations=a.num_iterations,
        learning_rate=a.learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        optim="adamw_torch",
        bf16=a.dtype == "bf16",
        fp16=False,
        gradient_checkpointing=a.gradient_checkpointing,
        log_completions=False,
        seed=a.seed,
        data_seed=a.seed,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        dataloader_num_workers=0,
        **kw,
    )
    args.bf16 = a.dtype == "bf16"
    args.gradient_checkpointing = a.gradient_checkpointing

    # ---- timing: steps by callback, the phases by wrapping the trainer's methods -------------------------
    PHASES = ("generate", "score", "logprobs")
    phase = dict.fromkeys(PHASES, 0.0)
    lengths, step_lengths, step_rewards = [], [], []

    def timed(name, fn, only_no_grad=False, after=None):
        def wrapper(*args, **kw):
            if only_no_grad and torch.is_grad_enabled():
                return fn(*args, **kw)
            t = time.perf_counter()
            try:
                out = fn(*args, **kw)
            finally:
                phase[name] += time.perf_counter() - t
            if after:
                after(out)
            return out
        return wrapper

    def note_lengths(out):  # GRPO returns (completion ids, logprobs), RLOO the ids
        lengths.extend(len(c) for c in (out[0] if isinstance(out, tuple) else out))

    Trainer._generate_single_turn = timed("generate", Trainer._generate_single_turn, after=note_lengths)
    Trainer._calculate_rewards = timed("score", Trainer._calculate_rewards)
    Trainer._get_per_token_logps_and_entropies = timed("logprobs", Trainer._get_per_token_logps_and_entropies,
                                                       only_no_grad=True)

    stamps, phases = [], []

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            stamps.append(time.perf_counter())
            phase.update(dict.fromkeys(PHASES, 0.0))

        def on_step_end(self, args, state, control, **kw):
            stamps.append(time.perf_counter())
            phases.append(dict(phase))
            phase.update(dict.fromkeys(PHASES, 0.0))
            step_lengths.append(round(sum(lengths) / max(1, len(lengths)), 2))
            lengths.clear()
            step_rewards.append(round(sum(rewards_seen) / max(1, len(rewards_seen)), 3))
            rewards_seen.clear()

    # The loader repeats each prompt G times (the trainer's sampler); B x steps prompts are enough.
    train = Dataset.from_list([{"prompt": t} for t in texts])
    trainer = Trainer(model=policy, reward_funcs=[max_words], args=args, train_dataset=train, processing_class=tok,
                      peft_config=peft_config, callbacks=[Clock()])
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0

    steps = [round(stamps[i + 1] - stamps[i], 3) for i in range(len(stamps) - 1)]
    per_phase = [{**{k: round(p[k], 3) for k in PHASES}, "train": round(s - sum(p.values()), 3)}
                 for s, p in zip(steps, phases)]

    def med(xs):
        return round(statistics.median(xs), 3) if xs else None

    print(json.dumps({
        "impl": "trl", "method": a.method, "trl_version": trl.__version__,
        "transformers_version": __import__("transformers").__version__, "torch_version": torch.__version__,
        "steps": len(steps), "batch_size": B, "num_generations": G, "micro_batch_size": M,
        "prompt_length": a.prompt_length, "target_length": a.target_length, "temperature": a.temperature,
        "max_words": a.max_words, "lora_rank": a.lora_rank, "lora_alpha": alpha, "lora_targets": a.lora_targets,
        "beta": args.beta, "loss_type": getattr(args, "loss_type", None),
        "scale_rewards": getattr(args, "scale_rewards", None), "epsilon": a.epsilon,
        "epsilon_high": a.epsilon_high, "num_iterations": a.num_iterations, "learning_rate": a.learning_rate,
        "trainable_parameters": trainable, "threads": torch.get_num_threads(), "dtype": a.dtype,
        "gradient_checkpointing": a.gradient_checkpointing, "eos_id": eos_id, "seed": a.seed,
        "step_seconds": steps, "step_seconds_median": med(steps), "step_seconds_median_after_first": med(steps[1:]),
        "phase_seconds": per_phase,
        "phase_seconds_median": {k: med([p[k] for p in per_phase]) for k in PHASES + ("train",)},
        "response_length": step_lengths, "reward_mean": step_rewards, "train_seconds": round(wall, 3),
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }), flush=True)


if __name__ == "__main__":
    main()
