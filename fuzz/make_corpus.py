#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (fuzz/corpus/<target>/): a few small valid inputs
per reader, written byte for byte here so that they are reproducible. Run from anywhere, with
the dev venv's python for the Parquet seeds (pyarrow writes them):
    .venv/bin/python fuzz/make_corpus.py
"""
import gzip
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def pattern(n, seed=1):
    """n deterministic bytes (a small LCG), for tensor data."""
    out = bytearray()
    x = seed
    for _ in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out.append((x >> 16) & 0xFF)
    return bytes(out)


def f16s(values):
    return b"".join(struct.pack("<e", v) for v in values)


def f32s(values):
    return b"".join(struct.pack("<f", v) for v in values)


# ---- GGUF --------------------------------------------------------------------------------

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?",
          U64: "<Q", I64: "<q", F64: "<d"}
T_F32, T_F16, T_Q4_0, T_Q4_1, T_Q5_0, T_Q5_1, T_Q8_0, T_Q4_K, T_Q6_K, T_BF16 = 0, 1, 2, 3, 6, 7, 8, 12, 14, 30
BLOCK = {T_F32: (1, 4), T_F16: (1, 2), T_BF16: (1, 2), T_Q4_0: (32, 18), T_Q4_1: (32, 20),
         T_Q5_0: (32, 22), T_Q5_1: (32, 24), T_Q8_0: (32, 34), T_Q4_K: (256, 144), T_Q6_K: (256, 210)}


def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gvalue(t, v):
    if t == STRING:
        return gstr(v)
    if t == ARRAY:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(gvalue(et, x) for x in items)
    return struct.pack(SCALAR[t], v)


def gguf(kv, tensors, version=3, alignment=32):
    """kv: [(key, type, value)]; tensors: [(name, dims fastest first, type, data bytes)]."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kv))
    for key, t, v in kv:
        out += gstr(key) + struct.pack("<I", t) + gvalue(t, v)
    offset = 0
    offsets = []
    for name, dims, t, data in tensors:
        offsets.append(offset)
        offset += (len(data) + alignment - 1) // alignment * alignment
    for (name, dims, t, data), off in zip(tensors, offsets):
        out += gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", t, off)
    out += b"\0" * ((-len(out)) % alignment)
    for (name, dims, t, data), off in zip(tensors, offsets):
        out += data + b"\0" * ((-len(data)) % alignment)
    return out


def quantized(t, n, seed):
    per, nbytes = BLOCK[t]
    blocks = n // per
    data = bytearray(pattern(blocks * nbytes, seed))
    # Keep the f16 scales finite and small: the first two bytes of each block (d), and of
    # Q4_1/Q5_1 (m) and the K types (dmin), are f16 values.
    for b in range(blocks):
        base = b * nbytes
        if t in (T_Q4_0, T_Q4_1, T_Q5_0, T_Q5_1, T_Q8_0, T_Q4_K):
            data[base:base + 2] = f16s([0.01])
        if t in (T_Q4_1, T_Q5_1, T_Q4_K):
            data[base + 2:base + 4] = f16s([0.002])
        if t == T_Q6_K:
            data[base + nbytes - 2:base + nbytes] = f16s([0.01])
    return bytes(data)


def gguf_seeds():
    kv = [("general.architecture", STRING, "test"), ("general.name", STRING, "types"),
          ("u8", U8, 7), ("i8", I8, -7), ("u16", U16, 700), ("i16", I16, -700), ("u32", U32, 70000),
          ("i32", I32, -70000), ("u64", U64, 1 << 40), ("i64", I64, -(1 << 40)), ("f32", F32, 0.5),
          ("f64", F64, 0.25), ("bool", BOOL, True),
          ("ints", ARRAY, (I32, [1, -2, 3])), ("u64s", ARRAY, (U64, [1, 2])),
          ("floats", ARRAY, (F32, [0.5, 1.5])), ("strings", ARRAY, (STRING, ["a", "bc"])),
          ("bools", ARRAY, (BOOL, [True, False])), ("general.alignment", U32, 32)]
    tensors = [("f32", [3, 2], T_F32, f32s([1, 2, 3, 4, 5, 6])),
               ("f16", [4], T_F16, f16s([1, -1, 0.5, 2])),
               ("bf16", [2], T_BF16, b"\x80\x3f\x00\x40")]
    for i, t in enumerate([T_Q4_0, T_Q4_1, T_Q5_0, T_Q5_1, T_Q8_0]):
        tensors.append((f"q{t}", [32], t, quantized(t, 32, i + 2)))
    for i, t in enumerate([T_Q4_K, T_Q6_K]):
        tensors.append((f"k{t}", [256], t, quantized(t, 256, i + 9)))
    put("gguf", "types.gguf", gguf(kv, tensors))
    put("gguf", "v2-empty.gguf", gguf([("general.name", STRING, "empty")], [], version=2))
    put("gguf", "align8.gguf", gguf([("general.alignment", U32, 8)],
                                    [("a", [2], T_F16, f16s([1, 2])), ("b", [1], T_F32, f32s([3]))], alignment=8))

    # A tiny Llama model: 1 layer, hidden 8, 2 heads of 4 (1 KV head), FFN 16, 12 tokens.
    tokens = ["a", "b", "c", "\u0120", "ab", "\u0120a", "!", "1", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
    types = [1] * 8 + [3, 3, 3, 3]
    kv = [("general.architecture", STRING, "llama"), ("llama.block_count", U32, 1),
          ("llama.context_length", U32, 64), ("llama.embedding_length", U32, 8),
          ("llama.feed_forward_length", U32, 16), ("llama.attention.head_count", U32, 2),
          ("llama.attention.head_count_kv", U32, 1), ("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
          ("llama.rope.freq_base", F32, 10000.0),
          ("tokenizer.ggml.model", STRING, "gpt2"), ("tokenizer.ggml.pre", STRING, "gpt2"),
          ("tokenizer.ggml.tokens", ARRAY, (STRING, tokens)),
          ("tokenizer.ggml.token_type", ARRAY, (I32, types)),
          ("tokenizer.ggml.merges", ARRAY, (STRING, ["a b", "\u0120 a"])),
          ("tokenizer.ggml.bos_token_id", U32, 8), ("tokenizer.ggml.eos_token_id", U32, 10),
          ("tokenizer.ggml.padding_token_id", U32, 11), ("tokenizer.ggml.add_bos_token", BOOL, False),
          ("tokenizer.chat_template", STRING,
           "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
           "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")]
    H, V, F, Q, KV = 8, 12, 16, 8, 4
    seed = [20]

    def mat(rows, cols):
        seed[0] += 1
        vals = [((b % 17) - 8) / 64 for b in pattern(rows * cols, seed[0])]
        return f16s(vals)

    ones = f32s([1.0] * H)
    tensors = [("token_embd.weight", [H, V], T_F16, mat(V, H)), ("output_norm.weight", [H], T_F32, ones),
               ("blk.0.attn_norm.weight", [H], T_F32, ones), ("blk.0.ffn_norm.weight", [H], T_F32, ones),
               ("blk.0.attn_q.weight", [H, Q], T_F16, mat(Q, H)), ("blk.0.attn_k.weight", [H, KV], T_F16, mat(KV, H)),
               ("blk.0.attn_v.weight", [H, KV], T_F16, mat(KV, H)), ("blk.0.attn_output.weight", [Q, H], T_F16, mat(H, Q)),
               ("blk.0.ffn_gate.weight", [H, F], T_F16, mat(F, H)), ("blk.0.ffn_up.weight", [H, F], T_F16, mat(F, H)),
               ("blk.0.ffn_down.weight", [F, H], T_F16, mat(H, F))]
    put("gguf", "tiny-llama.gguf", gguf(kv, tensors))


# ---- safetensors -------------------------------------------------------------------------

def safetensors(entries, metadata=None):
    """entries: [(name, dtype, shape, data)] -> a .safetensors file, data in this order."""
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    blob = b""
    for name, dtype, shape, data in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blob += data
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + blob


def safetensors_seeds():
    put("safetensors", "three.safetensors", safetensors(
        [("w", "F32", [2, 2], f32s([1, 2, 3, 4])), ("h", "F16", [3], f16s([1, 0.5, -2])),
         ("b", "BF16", [2], b"\x80\x3f\x00\x40")], {"format": "pt", "note": "seed"}))
    put("safetensors", "scalar-empty.safetensors", safetensors(
        [("scalar", "F32", [], f32s([7])), ("empty", "F16", [0, 4], b"")]))
    put("safetensors", "misaligned.safetensors", safetensors(
        [("h", "F16", [1], f16s([1])), ("f", "F32", [1], f32s([2]))]))


# ---- tokenizer.json ----------------------------------------------------------------------

def byte_level_symbols():
    """GPT-2's bytes_to_unicode: the character standing for each byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


GPT2 = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3 = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""


def tokenizer_seeds():
    sym = byte_level_symbols()
    vocab = {sym[b]: b for b in range(256)}
    merges = []
    for a, b in [("H", "e"), ("l", "l"), ("He", "ll"), ("\u0120", "w"), ("o", "r"), ("\u0120w", "or")]:
        merges.append(f"{a} {b}")
        vocab.setdefault(a + b, len(vocab))
    added = [{"id": len(vocab), "content": "<|endoftext|>", "special": True},
             {"id": len(vocab) + 1, "content": "<pad>", "special": True}]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    full = {"version": "1.0", "added_tokens": added, "normalizer": None, "pre_tokenizer": byte_level,
            "post_processor": {"type": "TemplateProcessing",
                               "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
                                          {"Sequence": {"id": "A", "type_id": 0}}]},
            "decoder": {"type": "ByteLevel"},
            "model": {"type": "BPE", "vocab": vocab, "merges": merges, "unk_token": None}}
    put("tokenizer", "gpt2-bytes.json", json.dumps(full, ensure_ascii=False))

    small = {"a": 0, "b": 1, "\u0120": 2, "ab": 3, "\u0120ab": 4, "1": 5, "2": 6, "12": 7}
    smollm = {"model": {"type": "BPE", "vocab": small, "merges": [["a", "b"], ["\u0120", "ab"], ["1", "2"]]},
              "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                  {"type": "Digits", "individual_digits": True},
                  {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}]},
              "added_tokens": [{"id": 8, "content": "<|im_end|>", "special": True}]}
    put("tokenizer", "smollm-small.json", json.dumps(smollm, ensure_ascii=False) + "\0ab ab 12 <|im_end|>")
    llama3 = {"model": {"type": "BPE", "vocab": small, "merges": ["a b", "\u0120 ab"], "ignore_merges": True},
              "normalizer": {"type": "NFC"},
              "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                  {"type": "Split", "pattern": {"Regex": LLAMA3}, "behavior": "Isolated", "invert": False},
                  {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]},
              "post_processor": {"type": "Sequence", "processors": [
                  {"type": "ByteLevel"},
                  {"type": "TemplateProcessing", "single": [{"Sequence": {"id": "A"}}, {"SpecialToken": {"id": "<eos>"}}]}]},
              "added_tokens": [{"id": 9, "content": "<eos>", "special": True}]}
    put("tokenizer", "llama3-split.json", json.dumps(llama3, ensure_ascii=False))
    gpt2split = dict(llama3)
    gpt2split["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": GPT2}, "behavior": "Isolated"},
        {"type": "ByteLevel", "use_regex": False}]}
    put("tokenizer", "gpt2-split.json", json.dumps(gpt2split, ensure_ascii=False) + "\0ab\n\n ab's 123")


# ---- dataset files: JSONL, .jsonl.gz, Parquet ---------------------------------------------

def dataset_seeds():
    rows = {
        "seed.jsonl": [{"input_text": "Summarize: the cat sat.", "candidate_0": " A cat sat.", "candidate_1": " Dogs.", "choice": 0}],
        "common.jsonl": [{"prompt": "Q: 2+2?", "chosen": " 4", "rejected": " 5"},
                         {"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go away"}],
        "chat.jsonl": [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                        "chosen": "Hello.", "rejected": "What?"},
                       {"messages": [{"author": "user", "content": "Hi"}], "context": "ctx", "candidate_0": "a",
                        "candidate_1": "b", "choice": 1}],
        "conversational.jsonl": [
            {"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "Hello"}],
             "rejected": [{"role": "assistant", "content": "Bye"}]},
            {"chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
             "rejected": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Bye"}]}],
        "prompts.jsonl": [{"input_text": "Summarize: a b c"}, {"prompt": "Write a poem."},
                          {"prompt": [{"role": "user", "content": "Hi"}]},
                          {"inputs": {"inputs_pretokenized": "x"}, "prediction": "y"}],
        "scored.jsonl": [{"input_text": "Q?", "completion": " A."}, {"prompt": "Q?", "prediction": ""}],
    }
    for name, lines in rows.items():
        put("dataset", name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines))
    put("dataset", "mixed.jsonl", '{"prompt": "caf\u00e9", "chosen": "a", "rejected": "b"}\r\n\n{"prompt": 1}\n[1]\n{"a":1,"a":2}\n')
    # gzip-compressed JSONL (told by its magic bytes, whatever the name): one member, and two
    # members read as one. mtime=0 keeps the bytes the same from run to run.
    common = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows["common.jsonl"]).encode()
    put("dataset", "common.jsonl.gz", gzip.compress(common, mtime=0))
    chat = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows["chat.jsonl"]).encode()
    put("dataset", "two-members.jsonl.gz", gzip.compress(common, 1, mtime=0) + gzip.compress(chat, 9, mtime=0))
    parquet_seeds(rows)


def parquet_seeds(rows):
    """Parquet files (told by "PAR1"), written by pyarrow: the dev venv's python has it."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        print("make_corpus: pyarrow missing (run with the dev venv's python): the Parquet seeds are kept as they are")
        return

    def parquet(table, **options):
        sink = pa.BufferOutputStream()
        # No statistics and no stored Arrow schema: small files, within the fuzzer's max_len.
        pq.write_table(table, sink, write_statistics=False, store_schema=False, **options)
        return sink.getvalue().to_pybytes()

    seed = pa.table({"input_text": ["Q: 1+1?", "Q: sky?", "Q: cat?"], "candidate_0": [" 2", " blue", " meow"],
                     "candidate_1": [" 3", " green", " woof"], "choice": pa.array([0, 0, 1], pa.int64())})
    put("dataset", "seed.parquet", parquet(seed, compression="none", use_dictionary=False, row_group_size=2))
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    conversational = pa.table({
        "prompt": pa.array([[{"role": "user", "content": "Hi"}], [{"role": "user", "content": "2+2?"}]],
                           pa.list_(message)),
        "chosen": pa.array([[{"role": "assistant", "content": "Hello"}], [{"role": "assistant", "content": "4"}]],
                           pa.list_(message)),
        "rejected": pa.array([[{"role": "assistant", "content": "Bye"}], [{"role": "assistant", "content": "5"}]],
                             pa.list_(message)),
        "score": pa.array([1.5, None], pa.float32()), "ok": [True, False]})
    put("dataset", "conversational.parquet", parquet(conversational, compression="snappy"))
    prompts = pa.table({"prompt": pa.array(["Write a poem.", "Sum up: a b c", None], pa.large_string()),
                        "id": pa.array([1, 2, 3], pa.uint16()),
                        "tags": pa.array([["x"], [], None], pa.list_(pa.string()))})
    put("dataset", "prompts.parquet", parquet(prompts, compression="gzip", use_dictionary=True))


# ---- pipeline spec -----------------------------------------------------------------------

def spec_seeds():
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "examples", "demo.yaml")) as f:
        put("pipeline_spec", "demo.yaml", f.read())
    put("pipeline_spec", "dpo.yaml", """method: dpo
preference_dataset: prefs.jsonl
prompt_dataset: prompts.jsonl
large_model_reference: smollm2-135m-instruct
instruction: "Answer briefly."
reward_model_train_steps: 10
advanced:
  export_format: gguf
""")
    put("pipeline_spec", "rules.yaml", """method: grpo
prompt_dataset: prompts.jsonl
preference_dataset: prefs.jsonl
rewards:
  - max-words=50
  - 'regex=^(Yes|No),'
kl_coeff: 0.05
advanced:
  num_generations: 4
  reward_weights: [1, 0.5, 2]
""")
    put("pipeline_spec", "spec.json", json.dumps({
        "preference_dataset": "p.jsonl", "prompt_dataset": "q.jsonl", "eval_dataset": "e.jsonl",
        "large_model_reference": "smollm2-135m-instruct", "prompt_sequence_length": 128,
        "autosxs": {"task": "question_answering"}, "advanced": {"inference_batch_size": 8}}))


# ---- TensorBoard event files -------------------------------------------------------------

def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(data):
    c = crc32c(data)
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def record(data):
    n = struct.pack("<Q", len(data))
    return n + struct.pack("<I", masked(n)) + data + struct.pack("<I", masked(data))


def varint(v):
    out = b""
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(n, wire, payload):
    key = varint((n << 3) | wire)
    if wire == 2:
        return key + varint(len(payload)) + payload
    return key + payload


def scalar_event(wall, step, tag, value):
    v = field(1, 2, tag.encode()) + field(2, 5, struct.pack("<f", value))
    return field(1, 1, struct.pack("<d", wall)) + field(2, 0, varint(step)) + field(5, 2, field(1, 2, v))


def tensor_event(wall, step, tag, value):
    # summary.value{tag, metadata{plugin_data{plugin_name "scalars"}}, tensor{dtype DT_FLOAT, float_val}}
    meta = field(1, 2, field(1, 2, b"scalars"))
    tensor = field(1, 0, varint(1)) + field(5, 2, struct.pack("<f", value))
    v = field(1, 2, tag.encode()) + field(9, 2, meta) + field(8, 2, tensor)
    return field(1, 1, struct.pack("<d", wall)) + field(2, 0, varint(step)) + field(5, 2, field(1, 2, v))


def tensorboard_seeds():
    version = field(1, 1, struct.pack("<d", 1.0)) + field(3, 2, b"brain.Event:2")
    events = [version, scalar_event(1.5, 1, "loss", 0.5), scalar_event(2.5, 2, "loss", 0.25),
              tensor_event(3.0, 3, "reward/mean", 1.0)]
    raw = b"".join(record(e) for e in events)
    put("tensorboard", "file", b"\0" + raw)
    put("tensorboard", "torn-tail", b"\0" + raw + record(scalar_event(4.0, 4, "kl", 0.1))[:-6])
    put("tensorboard", "zero-tail", b"\0" + raw + b"\0" * 20)
    put("tensorboard", "events", b"\1" + b"".join(struct.pack("<H", len(e)) + e for e in events))


# ---- server requests ---------------------------------------------------------------------

def serve_seeds():
    put("serve_api", "chat.json", json.dumps({
        "model": "base", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                                      {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}],
        "max_tokens": 16, "temperature": 0.7, "top_p": 0.9, "seed": 3, "stop": ["\n", "END"], "n": 2}))
    put("serve_api", "chat-stream.json", json.dumps({
        "model": "base", "messages": [{"role": "developer", "content": "x"}, {"role": "user", "content": "caf\u00e9"}],
        "stream": True, "stream_options": {"include_usage": True}, "logprobs": True, "top_logprobs": 3,
        "max_completion_tokens": 8, "stop": "."}))
    put("serve_api", "completion.json", json.dumps({
        "model": "base:adapter", "prompt": "Once upon a time", "max_tokens": 5, "logprobs": 2, "seed": -1}))
    put("serve_api", "completion-list.json", json.dumps({
        "model": "base", "prompt": ["a", "b"], "n": 1, "stream": True, "temperature": 0}))


# ---- annotation event logs (fuzz_annotate_log: items item-0..2, annotators alice and bob) ----

def annotate_seeds():
    def label(item, who, choice, shown=(0, 1), rationale="", seconds=1.5):
        return json.dumps({"event": "label", "item": item, "annotator": who, "choice": choice, "shown": list(shown),
                           "rationale": rationale, "seconds": seconds, "time": "2026-01-01T00:00:00.000Z"})
    def undo(item, who):
        return json.dumps({"event": "undo", "item": item, "annotator": who, "time": "2026-01-01T00:00:01.000Z"})
    put("annotate_log", "labels.jsonl", "\n".join([
        label("item-0", "alice", 0), label("item-0", "bob", 1, (1, 0), "shorter"), label("item-1", "alice", "tie"),
        label("item-1", "bob", "tie"), label("item-2", "alice", "skip"), label("item-2", "bob", 1)]) + "\n")
    put("annotate_log", "undo.jsonl", "\n".join([
        label("item-0", "alice", 1), undo("item-0", "alice"), label("item-0", "alice", 0, (1, 0), "caf\u00e9")]) + "\n")
    put("annotate_log", "cut-short.jsonl", label("item-0", "bob", 0) + "\n" + label("item-1", "bob", 1)[:40])


if __name__ == "__main__":
    gguf_seeds()
    safetensors_seeds()
    tokenizer_seeds()
    dataset_seeds()
    spec_seeds()
    tensorboard_seeds()
    serve_seeds()
    annotate_seeds()
