"""PPO with TRL's PPOTrainer (the peer of `rlhf train-policy`), timed per PPO step.

TRL 1.x no longer ships PPOTrainer; this runs under bench/.venv-ppo (made by bench/run_ppo.sh)
with TRL 0.29.1, whose `trl.experimental.ppo.PPOTrainer` is the last release of it.

Settings as ours: the default model (SmolLM2-135M-Instruct, the GGUF dequantized to fp32 once,
as bench/reward_trl.py does), fp32 on the CPU, B prompts a step of exactly P tokens (the last P
ids of each text), responses of at most T tokens sampled at the given temperature (top-k 0,
top-p 1) and cut after the first EOS (`stop_token="eos"`), LoRA rank r (alpha r, no dropout) on
q_proj/v_proj of the policy with the reference = the policy with its adapter disabled, KL
coefficient k (k1 estimator), 4 PPO epochs, one minibatch of B split into micro batches of M
(gradient accumulation), AdamW at 1e-4 decaying linearly, no gradient checkpointing (PPOConfig turns it on by default:
slower, less memory), no bf16 (on by default in PPOConfig), no sample generations.

The reward model is an AutoModelForSequenceClassification of the same base (score head seeded,
untrained: what it scores changes nothing in the time of a step). The value model is another
one; TRL trains all its weights. `--value-model lora` (the default) gives it LoRA (rank 4: ours
starts its value adapter from the reward model's, rank 4 by default) on q_proj/v_proj plus its
score head instead, the closest to our value adapter on the shared base; `--value-model full`
is TRL's own setting.

One PPO step = rollout (generation), log-probs (the policy's from the generation logits, the
reference's by a forward with the adapter off), scoring (value and reward forwards) and the
update (4 epochs of forward/backward/AdamW over policy and value model). Each step is timed from
the end of the previous one (the first from the start of training; model loading and the
trainer's set-up are outside). The phases are timed by wrapping TRL's own functions in its
module, counted only outside autograd (the rollout runs under no_grad; the update's calls of
the same functions run with gradients and stay in train):
  generate = batch_generation;
  logprobs = selective_log_softmax on the generation logits and on the reference logits, and
             the reference forward (`forward` with the adapter off);
  score    = get_reward on the value model and on the reward model;
  train    = the rest of the step (the 4 epochs of updates; also the rollout's small tensor
             work between those calls: truncation after EOS, rewards, advantages).

Prints one JSON line (last line of stdout): step_seconds (each step), step_seconds_median,
step_seconds_median_after_first, phase_seconds (each step: generate, logprobs, score, train)
and their medians, each step's mean response length (tokens up to and including the first EOS, T if
none) and fraction of responses that stopped at EOS, decode steps, peak RSS of this process. Python here is for benchmarking only.
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
    ap.add_argument("--prompts", required=True, help="JSONL, one {\"input_text\": ...} a line")
    ap.add_argument("--gguf", default=os.path.join(os.environ.get("RLHF_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rlhf"),
        "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--hf-cache", help="folder of the model converted from the GGUF (made once); default "
                    "~/.cache/rlhf/bench/<gguf name>-hf")
    ap.add_argument("--prepare-only", action="store_true", help="convert the GGUF into --hf-cache and exit")
    ap.add_argument("--steps", type=int, default=3, help="PPO steps (each one batch of B prompts)")
    ap.add_argument("--batch-size", type=int, default=8, help="B: prompts a step")
    ap.add_argument("--micro-batch-size", type=int, default=0, help="M: sequences a forward/backward (0 = B)")
    ap.add_argument("--mini-batches", type=int, default=1, help="minibatches a PPO epoch")
    ap.add_argument("--prompt-length", type=int, default=64, help="P: prompt ids (the last P of each text)")
    ap.add_argument("--target-length", type=int, default=32, help="T: most response tokens")
    ap.add_argument("--ppo-epochs", type=int, default=4)
    ap.add_argument("--lora-rank", type=int, default=1)
    ap.add_argument("--kl-coeff", type=float, default=0.1)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--learning-rate", type=float, default=1e-4)
    ap.add_argument("--value-model", choices=["lora", "full"], default="lora",
                    help="lora: LoRA on q/v + score head trained; full: all weights (TRL's own)")
    ap.add_argument("--value-lora-rank", type=int, default=4,
                    help="rank of the value model's LoRA (ours: the reward model's, 4 by default)")
    ap.add_argument("--no-stop-at-eos", action="store_true", help="always generate T tokens (no stop token)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--gradient-checkpointing", action="store_true", help="PPOConfig's default; off here")
    ap.add_argument("--output-dir", default="", help="trainer output folder (default: a temp folder)")
    return ap.parse_args()


def read_prompts(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["input_text"] for line in f if line.strip()]


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
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from datasets import Dataset
    from peft import LoraConfig, inject_adapter_in_model
    from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer,
                              TrainerCallback, set_seed)
    import trl
    import trl.experimental.ppo.ppo_trainer as ppo_mod
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    B, M = a.batch_size, a.micro_batch_size or a.batch_size
    if B % M or B % a.mini_batches or (B // a.mini_batches) % M:
        sys.exit("--batch-size must be a multiple of --mini-batches x --micro-batch-size")

    tok = AutoTokenizer.from_pretrained(folder)
    eos_id = tok.eos_token_id
    # Padding must differ from the EOS that ends a response: TRL cuts responses after the EOS with
    # the pad token and reads scores and values at the last non-pad token. SmolLM2's pad is its EOS.
    pad = "<|endoftext|>" if "<|endoftext|>" in tok.get_vocab() else None
    if pad is None or tok.convert_tokens_to_ids(pad) == eos_id:
        pad = next(t for t in tok.all_special_tokens if tok.convert_tokens_to_ids(t) != eos_id)
    tok.pad_token = pad
    pad_id = tok.pad_token_id
    tok.padding_side = "left"

    texts = read_prompts(a.prompts)
    rows = []
    for t in texts:
        ids = tok(t, add_special_tokens=False)["input_ids"][-a.prompt_length:]
        if len(ids) != a.prompt_length:
            sys.exit(f"a prompt has {len(ids)} tokens, fewer than P = {a.prompt_length}: give longer texts")
        rows.append({"input_ids": ids})
    need = B * a.steps
    if len(rows) < B:
        sys.exit(f"{len(rows)} prompts, fewer than B = {B}")

    set_seed(a.seed)
    dtype = torch.float32
    policy = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    policy.generation_config.pad_token_id = pad_id
    reward = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1, dtype=dtype)
    value = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1, dtype=dtype)
    for m in (reward, value):
        m.config.pad_token_id = pad_id
    reward.requires_grad_(False)
    if a.value_model == "lora":
        value.requires_grad_(False)
        inject_adapter_in_model(LoraConfig(r=a.value_lora_rank, lora_alpha=a.value_lora_rank, lora_dropout=0.0,
                                           target_modules=["q_proj", "v_proj"], bias="none"), value)
        for n, p in value.named_parameters():
            p.requires_grad_("lora_" in n or n.startswith("score."))

    peft_config = LoraConfig(task_type="CAUSAL_LM", r=a.lora_rank, lora_alpha=a.lora_rank, lora_dropout=0.0,
                             target_modules=["q_proj", "v_proj"], bias="none")
    out_dir = a.output_dir or tempfile.mkdtemp(prefix="ppo_trl_")
    args = PPOConfig(
        output_dir=out_dir,
        total_episodes=need,
        per_device_train_batch_size=M,
        gradient_accumulation_steps=B // a.mini_batches // M,
        num_mini_batches=a.mini_batches,
        local_rollout_forward_batch_size=B,  # the whole batch in one generate call, as ours
        num_ppo_epochs=a.ppo_epochs,
        response_length=a.target_length,
        temperature=a.temperature,
        kl_coef=a.kl_coeff,
        kl_estimator="k1",
        stop_token=None if a.no_stop_at_eos else "eos",
        missing_eos_penalty=None,
        whiten_rewards=False,
        learning_rate=a.learning_rate,
        lr_scheduler_type="linear",
        weight_decay=0.0,
        optim="adamw_torch",
        num_sample_generations=0,
        bf16=False,
        fp16=False,
        gradient_checkpointing=a.gradient_checkpointing,
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
    # PPOConfig's __post_init__ may turn bf16 back on when it is unset; make sure of fp32.
    args.bf16 = False
    args.gradient_checkpointing = a.gradient_checkpointing
    train = Dataset.from_list(rows)  # TRL's loader reshuffles and starts again when it runs out

    # ---- timing: steps by callback, the rollout's phases by wrapping TRL's functions --------------
    PHASES = ("generate", "logprobs", "score")
    phase = dict.fromkeys(PHASES, 0.0)
    lengths, decode_steps, step_lengths, step_eos = [], [], [], []

    def timed(name, fn):
        def wrapper(*args, **kw):
            if torch.is_grad_enabled():  # the update's own forwards and log-probs
                return fn(*args, **kw)
            t = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                phase[name] += time.perf_counter() - t
        return wrapper

    orig_generation = ppo_mod.batch_generation

    def batch_generation(model, queries, *args, **kw):
        t = time.perf_counter()
        query_responses, logits = orig_generation(model, queries, *args, **kw)
        phase["generate"] += time.perf_counter() - t
        resp = query_responses[:, queries.shape[1]:]
        decode_steps.append(resp.shape[1])
        first = ppo_mod.first_true_indices(resp == eos_id)
        if not a.no_stop_at_eos:
            lengths.extend(torch.clamp(first + 1, max=resp.shape[1]).tolist())
        else:
            lengths.extend([resp.shape[1]] * resp.shape[0])
        step_eos.append(round(float((first < resp.shape[1]).float().mean()), 3))
        return query_responses, logits

    ppo_mod.batch_generation = batch_generation
    ppo_mod.forward = timed("logprobs", ppo_mod.forward)  # in the rollout: the reference forward only
    ppo_mod.selective_log_softmax = timed("logprobs", ppo_mod.selective_log_softmax)
    ppo_mod.get_reward = timed("score", ppo_mod.get_reward)

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

    trainer = PPOTrainer(args=args, processing_class=tok, model=policy, ref_model=None, reward_model=reward,
                         train_dataset=train, value_model=value, peft_config=peft_config, callbacks=[Clock()])
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
        "impl": "trl", "trl_version": trl.__version__, "transformers_version": __import__("transformers").__version__,
        "torch_version": torch.__version__,
        "steps": len(steps), "batch_size": B, "micro_batch_size": M, "mini_batches": a.mini_batches,
        "prompt_length": a.prompt_length, "target_length": a.target_length, "ppo_epochs": a.ppo_epochs,
        "lora_rank": a.lora_rank, "kl_coeff": a.kl_coeff, "temperature": a.temperature,
        "value_model": a.value_model, "value_lora_rank": a.value_lora_rank if a.value_model == "lora" else None, "stop_at_eos": not a.no_stop_at_eos, "trainable_parameters": trainable,
        "threads": torch.get_num_threads(), "dtype": "fp32", "gradient_checkpointing": a.gradient_checkpointing,
        "pad_id": pad_id, "eos_id": eos_id, "seed": a.seed,
        "step_seconds": steps, "step_seconds_median": med(steps), "step_seconds_median_after_first": med(steps[1:]),
        "phase_seconds": per_phase,
        "phase_seconds_median": {k: med([p[k] for p in per_phase]) for k in PHASES + ("train",)},
        "phase_seconds_median_after_first": {k: med([p[k] for p in per_phase[1:]])
                                             for k in PHASES + ("train",)},
        "response_length": step_lengths, "eos_fraction": step_eos, "decode_steps": decode_steps, "train_seconds": round(wall, 3),
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }), flush=True)


if __name__ == "__main__":
    main()
