"""Load checks of a running `rlhf serve` through openai.AsyncOpenAI. Every wait is bounded.

Usage: load_checks.py GROUP CONFIG.json
  GROUP load        `concurrency` streaming requests at once over the models (base and adapters),
                    greedy, `rounds` times; each output must equal the same request sent alone;
                    the server's RSS (VmRSS of `pid`) after each round is reported
  GROUP disconnect  a client that drops its stream mid-way frees its slot (a server with
                    --max-batch 1): rlhf_running_sequences returns to 0, a new request completes
  GROUP sigterm     SIGTERM to `pid` while 8 streams are in flight: all 8 complete in full
CONFIG: {"base_url", "api_key", "pid", "models": [ids], "max_tokens", "concurrency", "rounds"}
Prints one JSON line (values and "failures").
"""
import asyncio
import json
import os
import signal
import socket
import sys
import time

import openai

import serve_common
from serve_common import metric, rss_kib, split_url

PROMPTS = [
    "Write one sentence about the sea.",
    "List three colours:",
    "The quick brown fox",
    "Explain gravity to a child.",
    "Once upon a time, in a small village,",
    "What is 7 times 8?",
    "A haiku about autumn:",
    "The best way to learn a language is",
    "Name a famous painter and one painting.",
    "Dear diary, today",
    "Summarize: the meeting moved to Tuesday because the room was booked.",
    "Translate to French: good morning",
    "def fibonacci(n):",
    "Three tips for sleeping well:",
    "The weather tomorrow will be",
    "Why is the sky blue?",
]


def requests_of(cfg, count):
    """(model, prompt) pairs cycling through the models and the prompts."""
    models = cfg["models"]
    return [(models[i % len(models)], PROMPTS[(i * 5) % len(PROMPTS)] + (" #%d" % (i // len(PROMPTS))))
            for i in range(count)]


def aclient(cfg, timeout=300):
    return openai.AsyncOpenAI(base_url=cfg["base_url"] + "/v1", api_key=cfg["api_key"], max_retries=0,
                              timeout=timeout)


async def one_plain(c, model, prompt, n):
    r = await c.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}], temperature=0,
                                        max_tokens=n)
    return r.choices[0].message.content, r.choices[0].finish_reason


async def one_stream(c, model, prompt, n, first_token=None):
    text, finish = [], None
    stream = await c.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                             temperature=0, max_tokens=n, stream=True)
    async for chunk in stream:
        for ch in chunk.choices:
            if ch.delta.content:
                text.append(ch.delta.content)
                if first_token is not None and not first_token.is_set():
                    first_token.set()
            if ch.finish_reason:
                finish = ch.finish_reason
    return "".join(text), finish


async def group_load(cfg, rep):
    pid, n, conc, rounds = cfg["pid"], cfg["max_tokens"], cfg["concurrency"], cfg["rounds"]
    reqs = requests_of(cfg, conc)
    c = aclient(cfg)
    # The same requests one at a time (not streamed): the reference.
    t0 = time.time()
    alone = []
    for m, p in reqs:
        alone.append(await asyncio.wait_for(one_plain(c, m, p, n), 120))
    rep.set("sequential_seconds", round(time.time() - t0, 2))
    rep.set("rss_kib_before", rss_kib(pid))
    rss, seconds = [], []
    await c.close()
    for r in range(rounds):
        # A client per round: no connection idles in a pool past the server's keep-alive time.
        c = aclient(cfg)
        t0 = time.time()
        results = await asyncio.gather(*[asyncio.wait_for(one_stream(c, m, p, n), 300) for m, p in reqs],
                                       return_exceptions=True)
        await c.close()
        seconds.append(round(time.time() - t0, 2))
        errors = [repr(x) for x in results if isinstance(x, BaseException)]
        rep.check(not errors, "round %d: %d errors, first %s" % (r, len(errors), errors[:1]))
        diff = [i for i, x in enumerate(results) if not isinstance(x, BaseException) and x != alone[i]]
        for i in diff[:3]:
            rep.check(False, "round %d request %d (%s): concurrent %r != alone %r" % (r, i, reqs[i][0], results[i],
                                                                                   alone[i]))
        rep.check(not diff, "round %d: %d of %d outputs differ from the same requests alone" % (r, len(diff),
                                                                                             len(reqs)))
        rss.append(rss_kib(pid))
        print("round %d: %d requests in %.2f s, RSS %d KiB" % (r, len(reqs), seconds[-1], rss[-1]), file=sys.stderr,
              flush=True)
    rep.set("round_seconds", seconds)
    rep.set("rss_kib", rss)
    rep.set("distinct_outputs", len(set(a for a in alone)))
    rep.set("generated_tokens", metric(cfg["base_url"], "rlhf_generated_tokens_total", cfg["api_key"]))
    rep.set("running_after", metric(cfg["base_url"], "rlhf_running_sequences", cfg["api_key"]))
    rep.set("queued_after", metric(cfg["base_url"], "rlhf_queue_length", cfg["api_key"]))


async def group_disconnect(cfg, rep):
    url, key = cfg["base_url"], cfg["api_key"]
    model = cfg["models"][0]
    # A long stream read for a few events, then the socket closed without a word.
    host, port = split_url(url)
    generated_before = metric(url, "rlhf_generated_tokens_total", key) or 0
    # Counting goes on for long under greedy decoding: the sequence would not end by itself soon.
    body = json.dumps({"model": model, "prompt": ", ".join(str(i) for i in range(1, 21)) + ",",
                       "temperature": 0, "max_tokens": cfg["max_tokens"], "stream": True}).encode()
    s = socket.create_connection((host, port), timeout=60)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Authorization: Bearer " + key.encode() + b"\r\nContent-Length: " + str(len(body)).encode() +
              b"\r\n\r\n" + body)
    got = b""
    while got.count(b"data: ") < 3:
        part = s.recv(4096)
        if not part:
            break
        got += part
    rep.check(got.count(b"data: ") >= 3, "the stream did not start: %r" % got[:300])
    rep.set("running_while_streaming", metric(url, "rlhf_running_sequences", key))
    s.close()
    t0 = time.time()
    running = None
    while time.time() - t0 < 60:
        running = metric(url, "rlhf_running_sequences", key)
        if running == 0:
            break
        await asyncio.sleep(0.1)
    rep.set("slot_freed_seconds", round(time.time() - t0, 2))
    rep.set("running_after_disconnect", running)
    rep.check(running == 0, "rlhf_running_sequences is %r 60 s after the client left" % running)
    generated = metric(url, "rlhf_generated_tokens_total", key)
    generated = None if generated is None else generated - generated_before
    rep.set("generated_tokens", generated)
    rep.check(generated is not None and generated < cfg["max_tokens"] / 2,
              "%r tokens generated: the sequence was not cancelled when its client left" % generated)
    # With one slot, a new request completes only if the slot was freed.
    c = aclient(cfg, timeout=60)
    t0 = time.time()
    text, finish = await asyncio.wait_for(one_plain(c, model, "Say hi.", 4), 60)
    rep.set("next_request_seconds", round(time.time() - t0, 2))
    rep.check(finish in ("stop", "length"), "the next request finished with %r" % finish)


async def group_sigterm(cfg, rep):
    pid, n = cfg["pid"], cfg["max_tokens"]
    reqs = requests_of(cfg, 8)
    c = aclient(cfg)
    alone = [await asyncio.wait_for(one_plain(c, m, p, n), 120) for m, p in reqs]
    firsts = [asyncio.Event() for _ in reqs]
    tasks = [asyncio.create_task(asyncio.wait_for(one_stream(c, m, p, n, firsts[i]), 300))
             for i, (m, p) in enumerate(reqs)]
    await asyncio.wait_for(asyncio.gather(*[f.wait() for f in firsts]), 120)
    os.kill(pid, signal.SIGTERM)
    rep.set("signalled", True)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [repr(x) for x in results if isinstance(x, BaseException)]
    rep.check(not errors, "%d of 8 in-flight requests failed after SIGTERM, first %s" % (len(errors), errors[:1]))
    for i, x in enumerate(results):
        if not isinstance(x, BaseException):
            rep.check(x == alone[i], "request %d after SIGTERM: %r != %r" % (i, x, alone[i]))
    rep.set("completed", sum(1 for x in results if not isinstance(x, BaseException)))


if __name__ == "__main__":
    serve_common.main({"load": group_load, "disconnect": group_disconnect, "sigterm": group_sigterm})
