"""Load for bench/run_serve.sh: the same prompts, greedy, through `rlhf serve` over HTTP or
through llama.cpp's own runtime in-process, at a given concurrency. Prints one JSON line.

  serve_load.py http  --url URL --key KEY --model ID --prompts FILE --new-tokens N --concurrency C
      C clients in a closed loop (each sends its next request when its previous one ends) stream
      /v1/completions; time to first token is from sending to the first streamed token.
  serve_load.py llama --gguf FILE --prompts FILE --new-tokens N --concurrency C --threads T
      llama.cpp (llama-cpp-python's build of it, its C API through ctypes): C sequences decoded
      together in one context, a finished sequence's slot taken by the next prompt at once
      (continuous batching, as llama-server does); greedy = argmax of the logits; time to first
      token is from a prompt's admission to its first token.
Both: tokens/s = generated tokens (the stop token included when one ends a sequence) / wall
time of the whole set; the completions' texts are printed for comparison.
"""
import argparse
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse


def read_prompts(path):
    with open(path) as f:
        return [json.loads(line)["prompt"] for line in f if line.strip()]


def http_one(url, key, model, prompt, n):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    body = json.dumps({"model": model, "prompt": prompt, "temperature": 0, "max_tokens": n, "stream": True,
                       "stream_options": {"include_usage": True}})
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", body=body,
                 headers={"Content-Type": "application/json", "Authorization": "Bearer " + key})
    r = conn.getresponse()
    if r.status != 200:
        raise RuntimeError("HTTP %d: %r" % (r.status, r.read()[:300]))
    ttft, text, tokens, buf = None, [], 0, b""
    while True:
        line = r.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data: "):
            continue
        data = line[6:]
        if data == b"[DONE]":
            break
        j = json.loads(data)
        for ch in j.get("choices", []):
            if ttft is None:
                ttft = time.perf_counter() - t0
            text.append(ch.get("text") or "")
        if j.get("usage"):
            tokens = j["usage"]["completion_tokens"]
    conn.close()
    return {"ttft": ttft, "tokens": tokens, "text": "".join(text), "seconds": time.perf_counter() - t0}


def run_http(a):
    prompts = read_prompts(a.prompts)
    out = [None] * len(prompts)
    lock = threading.Lock()
    nxt = [0]
    errors = []

    def worker():
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= len(prompts):
                return
            try:
                out[i] = http_one(a.url, a.key, a.model, prompts[i], a.new_tokens)
            except Exception as e:  # reported, not raised: the figures say how many failed
                errors.append(repr(e))

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(a.concurrency)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    done = [o for o in out if o]
    tokens = sum(o["tokens"] for o in done)
    print(json.dumps({"side": "rlhf serve", "concurrency": a.concurrency, "requests": len(done), "errors": errors,
                      "tokens": tokens, "seconds": round(wall, 3), "tokens_per_s": round(tokens / wall, 2),
                      "ttft_median_ms": round(1000 * statistics.median(o["ttft"] for o in done), 1),
                      "texts": [o["text"] if o else None for o in out]}))


def run_llama(a):
    import ctypes

    import llama_cpp as L
    import numpy as np

    prompts = read_prompts(a.prompts)
    C, N = a.concurrency, a.new_tokens
    L.llama_backend_init()
    mp = L.llama_model_default_params()
    mp.n_gpu_layers = 0
    model = L.llama_model_load_from_file(a.gguf.encode(), mp)
    if not model:
        raise RuntimeError("llama.cpp cannot load " + a.gguf)
    vocab = L.llama_model_get_vocab(model)
    n_vocab = L.llama_vocab_n_tokens(vocab)

    def tokenize(text):
        raw = text.encode()
        buf = (L.llama_token * (len(raw) + 8))()
        n = L.llama_tokenize(vocab, raw, len(raw), buf, len(buf), True, False)
        if n < 0:
            raise RuntimeError("tokenize: %d" % n)
        return list(buf[:n])

    def detokenize(tokens):
        out = b""
        buf = ctypes.create_string_buffer(256)
        for t in tokens:
            n = L.llama_token_to_piece(vocab, t, buf, len(buf), 0, False)
            out += buf.raw[:max(n, 0)]
        return out.decode("utf-8", errors="replace")

    ids = [tokenize(p) for p in prompts]
    per_seq = max(len(x) for x in ids) + N + 8
    n_batch = max(512, C + sum(sorted(len(x) for x in ids)[-C:]))
    cp = L.llama_context_default_params()
    cp.n_ctx = C * per_seq
    cp.n_batch = n_batch
    cp.n_ubatch = n_batch
    cp.n_seq_max = C
    cp.n_threads = a.threads
    cp.n_threads_batch = a.threads
    cp.no_perf = True
    ctx = L.llama_init_from_model(model, cp)
    if not ctx:
        raise RuntimeError("llama.cpp cannot make a context")
    mem = L.llama_get_memory(ctx)
    batch = L.llama_batch_init(n_batch, 0, 1)

    def argmax(i):
        p = L.llama_get_logits_ith(ctx, i)
        return int(np.ctypeslib.as_array(p, shape=(n_vocab,)).argmax())

    slots = [None] * C  # per slot: the prompt's index, position, tokens to feed, output, times
    results = [None] * len(prompts)
    nxt = 0
    t0 = time.perf_counter()
    while True:
        # Admit prompts into free slots; one batch of their prefills and the others' next tokens.
        n = 0
        rows = []  # (slot, batch index whose logits to read)
        for s in range(C):
            if slots[s] is None and nxt < len(prompts):
                L.llama_memory_seq_rm(mem, s, -1, -1)
                slots[s] = {"i": nxt, "pos": 0, "feed": ids[nxt], "out": [], "t0": time.perf_counter(), "ttft": None}
                nxt += 1
            st = slots[s]
            if st is None:
                continue
            for k, tok in enumerate(st["feed"]):
                batch.token[n] = tok
                batch.pos[n] = st["pos"] + k
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = s
                batch.logits[n] = 1 if k == len(st["feed"]) - 1 else 0
                n += 1
            st["pos"] += len(st["feed"])
            rows.append((s, n - 1))
        if n == 0:
            break
        batch.n_tokens = n
        rc = L.llama_decode(ctx, batch)
        if rc != 0:
            raise RuntimeError("llama_decode returned %d" % rc)
        now = time.perf_counter()
        for s, bi in rows:
            st = slots[s]
            tok = argmax(bi)
            if st["ttft"] is None:
                st["ttft"] = now - st["t0"]
            st["out"].append(tok)
            if L.llama_vocab_is_eog(vocab, tok) or len(st["out"]) >= N:
                results[st["i"]] = st
                slots[s] = None
            else:
                st["feed"] = [tok]
    wall = time.perf_counter() - t0
    tokens = sum(len(r["out"]) for r in results)
    texts = [detokenize([t for t in r["out"] if not L.llama_vocab_is_eog(vocab, t)]) for r in results]
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)
    print(json.dumps({"side": "llama.cpp", "concurrency": C, "requests": len(results), "errors": [],
                      "tokens": tokens, "seconds": round(wall, 3), "tokens_per_s": round(tokens / wall, 2),
                      "ttft_median_ms": round(1000 * statistics.median(r["ttft"] for r in results), 1),
                      "texts": texts}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("side", choices=["http", "llama"])
    p.add_argument("--url")
    p.add_argument("--key", default="")
    p.add_argument("--model")
    p.add_argument("--gguf")
    p.add_argument("--prompts", required=True)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads <= 0:
        import os
        a.threads = os.cpu_count()
    (run_http if a.side == "http" else run_llama)(a)


if __name__ == "__main__":
    sys.exit(main())
