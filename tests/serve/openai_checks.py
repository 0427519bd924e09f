"""Checks of a running `rlhf serve` through the official `openai` client and raw HTTP.

Usage: openai_checks.py GROUP CONFIG.json
  GROUP api       models, chat (plain and streamed, raw SSE bytes), completions (a string and a
                  list), adapters by name, logprobs
  GROUP errors    every error status with OpenAI's error shape (400, 401, 404, 413)
  GROUP overload  503 when the queue is full (a server with --max-queue 1 --max-batch 1)
CONFIG: {"base_url", "api_key", "prompt", "max_tokens", "adapters": [{"name", "prompt"}],
         "context", "max_body_bytes"}
Prints one JSON line (the values the gtest compares with the runtime's, and "failures").
"""
import json
import threading
import time

import openai

import serve_common
from serve_common import auth, error_shape, raw_request, sse_events


def client(cfg, key=None):
    return openai.OpenAI(base_url=cfg["base_url"] + "/v1", api_key=key if key is not None else cfg["api_key"],
                         max_retries=0, timeout=120)


def base_id(cfg):
    status, _, body = raw_request(cfg["base_url"], "GET", "/v1/models", headers=auth(cfg["api_key"]))
    for m in json.loads(body)["data"]:
        if m.get("parent") is None:
            return m["id"]
    raise RuntimeError("no base model in /v1/models: %r" % body)


def group_api(cfg, rep):
    c = client(cfg)
    url, key = cfg["base_url"], cfg["api_key"]
    P, N = cfg["prompt"], cfg["max_tokens"]

    status, _, body = raw_request(url, "GET", "/health")
    rep.check(status == 200 and json.loads(body) == {"status": "ok"}, "/health without a key: %d %r" % (status, body))

    # Models: the base and each adapter, with its parent.
    models = c.models.list()
    listed = [{"id": m.id, "object": m.object, "owned_by": m.owned_by, "parent": getattr(m, "parent", None),
               "root": getattr(m, "root", None)} for m in models.data]
    rep.set("models", listed)
    base = next((m["id"] for m in listed if m["parent"] is None), None)
    rep.check(base is not None, "no base model listed")
    status, _, body = raw_request(url, "GET", "/v1/models", headers=auth(key))
    rep.check(status == 200 and json.loads(body).get("object") == "list", "/v1/models object: %r" % body[:200])

    # Chat, greedy.
    msgs = [{"role": "user", "content": P}]
    r = c.chat.completions.create(model=base, messages=msgs, temperature=0, max_tokens=N)
    text = r.choices[0].message.content
    rep.set("chat_text", text)
    rep.set("chat_finish", r.choices[0].finish_reason)
    rep.set("chat_usage", [r.usage.prompt_tokens, r.usage.completion_tokens])
    rep.check(r.object == "chat.completion", "chat object %r" % r.object)
    rep.check(r.choices[0].message.role == "assistant", "chat role %r" % r.choices[0].message.role)
    rep.check(r.model == base, "chat model %r != %r" % (r.model, base))
    rep.check(r.choices[0].finish_reason in ("stop", "length"), "finish_reason %r" % r.choices[0].finish_reason)

    # The same, streamed through the client: the chunks concatenate to the same text.
    pieces, usage, finishes, roles = [], None, [], []
    for chunk in c.chat.completions.create(model=base, messages=msgs, temperature=0, max_tokens=N, stream=True,
                                           stream_options={"include_usage": True}):
        rep.check(chunk.object == "chat.completion.chunk", "chunk object %r" % chunk.object)
        if chunk.usage is not None:
            usage = [chunk.usage.prompt_tokens, chunk.usage.completion_tokens]
        for ch in chunk.choices:
            if ch.delta.content:
                pieces.append(ch.delta.content)
            if ch.delta.role:
                roles.append(ch.delta.role)
            if ch.finish_reason:
                finishes.append(ch.finish_reason)
    rep.set("stream_chunks", len(pieces))
    rep.check("".join(pieces) == text, "streamed %r != plain %r" % ("".join(pieces), text))
    rep.check(finishes == [r.choices[0].finish_reason], "stream finish reasons %r" % finishes)
    rep.check(roles == ["assistant"], "stream roles %r" % roles)
    rep.check(usage == [r.usage.prompt_tokens, r.usage.completion_tokens], "stream usage %r" % usage)

    # The raw SSE bytes: `data: {json}\n\n` events, the last `data: [DONE]\n\n`.
    status, headers, data = raw_request(url, "POST", "/v1/chat/completions",
                                        {"model": base, "messages": msgs, "temperature": 0, "max_tokens": N,
                                         "stream": True}, auth(key))
    rep.check(status == 200, "raw stream status %d" % status)
    rep.check(headers.get("content-type", "").startswith("text/event-stream"),
              "raw stream content-type %r" % headers.get("content-type"))
    rep.check(data.endswith(b"data: [DONE]\n\n"), "raw stream ends with %r" % data[-30:])
    try:
        events = sse_events(data)
        rep.check(events[-1] == "[DONE]" and events.count("[DONE]") == 1, "[DONE] is not the last event, once")
        raw_text = ""
        for e in events[:-1]:
            j = json.loads(e)
            for ch in j["choices"]:
                raw_text += ch["delta"].get("content") or ""
        rep.check(raw_text == text, "raw SSE text %r != %r" % (raw_text, text))
        rep.set("sse_events", len(events))
    except ValueError as e:
        rep.check(False, "raw SSE: %s" % e)

    # Completions: a string prompt, then a list of two (each as if sent alone).
    r = c.completions.create(model=base, prompt=P, temperature=0, max_tokens=N)
    rep.check(r.object == "text_completion", "completion object %r" % r.object)
    one = r.choices[0].text
    rep.set("completion_text", one)
    P2 = cfg.get("prompt2", "The capital of France is")
    r2 = c.completions.create(model=base, prompt=P2, temperature=0, max_tokens=N)
    rl = c.completions.create(model=base, prompt=[P, P2], temperature=0, max_tokens=N)
    got = sorted((ch.index, ch.text) for ch in rl.choices)
    rep.check(got == [(0, one), (1, r2.choices[0].text)], "list prompt %r != %r" % (got, [one, r2.choices[0].text]))
    rep.check(rl.usage.completion_tokens == r.usage.completion_tokens + r2.usage.completion_tokens,
              "list usage %r" % rl.usage)
    # Streamed completions concatenate too.
    s = "".join(ch.choices[0].text for ch in c.completions.create(model=base, prompt=P, temperature=0, max_tokens=N,
                                                                    stream=True) if ch.choices)
    rep.check(s == one, "streamed completion %r != %r" % (s, one))

    # Each adapter by name, greedy, on the given prompt text.
    outs = []
    for a in cfg.get("adapters", []):
        ra = c.completions.create(model=a["name"], prompt=a["prompt"], temperature=0, max_tokens=a["max_tokens"])
        rep.check(ra.model == a["name"], "adapter response model %r" % ra.model)
        outs.append({"name": a["name"], "text": ra.choices[0].text, "finish": ra.choices[0].finish_reason})
        rb = c.completions.create(model=base, prompt=a["prompt"], temperature=0, max_tokens=a["max_tokens"])
        outs[-1]["base_text"] = rb.choices[0].text
    rep.set("adapters", outs)

    # Log-probs: chat (content[].logprob with top_logprobs) and completions (token_logprobs).
    r = c.chat.completions.create(model=base, messages=msgs, temperature=0, max_tokens=N, logprobs=True,
                                  top_logprobs=3)
    content = r.choices[0].logprobs.content
    rep.set("chat_logprobs", [t.logprob for t in content])
    rep.set("chat_logprob_tokens", "".join(t.token for t in content))
    for t in content:
        rep.check(len(t.top_logprobs) == 3, "top_logprobs has %d entries" % len(t.top_logprobs))
        if t.top_logprobs:  # greedy: the chosen token is the most likely
            rep.check(abs(t.top_logprobs[0].logprob - t.logprob) < 1e-6 and t.top_logprobs[0].token == t.token,
                      "greedy token %r is not the top alternative %r" % (t.token, t.top_logprobs[0]))
            lp = [x.logprob for x in t.top_logprobs]
            rep.check(lp == sorted(lp, reverse=True), "top_logprobs not best first: %r" % lp)
    rep.check(len(content) == r.usage.completion_tokens or len(content) + 1 == r.usage.completion_tokens,
              "chat logprobs count %d, completion_tokens %d" % (len(content), r.usage.completion_tokens))
    rc = c.completions.create(model=base, prompt=P, temperature=0, max_tokens=N, logprobs=2)
    lp = rc.choices[0].logprobs
    rep.set("completion_logprobs", list(lp.token_logprobs))
    rep.check(len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset),
              "completion logprobs lengths differ")
    rep.check(rc.choices[0].text == one, "completion with logprobs %r != %r" % (rc.choices[0].text, one))


def group_errors(cfg, rep):
    url, key = cfg["base_url"], cfg["api_key"]
    base = base_id(cfg)
    A = auth(key)
    msgs = [{"role": "user", "content": "Hi"}]
    results = []

    def expect(name, status_want, path, body, headers=None, param=None, raw=False):
        h = A if headers is None else headers
        data = body if raw else json.dumps(body).encode()
        status, _, resp = raw_request(url, "POST", path, data, h)
        problem = error_shape(status, resp)
        err = json.loads(resp).get("error", {}) if problem is None else {}
        results.append({"name": name, "status": status, "error": err})
        rep.check(status == status_want, "%s: HTTP %d, expected %d: %r" % (name, status, status_want, resp[:300]))
        rep.check(problem is None, "%s: %s" % (name, problem))
        if param is not None:
            rep.check(err.get("param") == param, "%s: param %r, expected %r" % (name, err.get("param"), param))
        return err

    chat, comp = "/v1/chat/completions", "/v1/completions"
    e = expect("bad json", 400, chat, b'{"model": "x", "messages": [', raw=True)
    rep.check(e.get("type") == "invalid_request_error", "bad json: type %r" % e.get("type"))
    expect("missing messages", 400, chat, {"model": base}, param="messages")
    expect("missing prompt", 400, comp, {"model": base, "max_tokens": 2}, param="prompt")
    expect("missing model", 400, chat, {"messages": msgs}, param="model")
    expect("mistyped max_tokens", 400, chat, {"model": base, "messages": msgs, "max_tokens": "ten"}, param="max_tokens")
    expect("mistyped temperature", 400, comp, {"model": base, "prompt": "x", "temperature": "hot"}, param="temperature")
    expect("mistyped messages", 400, chat, {"model": base, "messages": "hello"}, param="messages")
    expect("bad role", 400, chat, {"model": base, "messages": [{"role": "wizard", "content": "x"}]},
           param="messages[0].role")
    ctx = cfg["context"]
    e = expect("prompt over the context", 400, comp, {"model": base, "prompt": "hi " * (ctx + 64), "max_tokens": 4})
    rep.set("context_error", e.get("message", ""))
    e = expect("prompt + max_tokens over the context", 400, chat,
               {"model": base, "messages": msgs, "max_tokens": ctx})
    rep.set("context_error2", e.get("message", ""))

    e = expect("no key", 401, chat, {"model": base, "messages": msgs}, headers={})
    rep.check(e.get("type") == "authentication_error", "no key: type %r" % e.get("type"))
    e = expect("wrong key", 401, chat, {"model": base, "messages": msgs}, headers=auth(key + "x"))
    rep.check(e.get("type") == "authentication_error", "wrong key: type %r" % e.get("type"))
    status, _, resp = raw_request(url, "GET", "/v1/models", headers={})
    rep.check(status == 401 and error_shape(status, resp) is None, "/v1/models without a key: %d" % status)

    e = expect("unknown model", 404, chat, {"model": "no-such-model", "messages": msgs}, param="model")
    rep.check(e.get("type") == "invalid_request_error", "unknown model: type %r" % e.get("type"))
    rep.set("unknown_model_error", e.get("message", ""))

    big = cfg["max_body_bytes"] + 1024
    e = expect("over max body", 413, comp, {"model": base, "prompt": "x" * big, "max_tokens": 1})
    rep.check(e.get("type") == "invalid_request_error", "413: type %r" % e.get("type"))

    # The same errors through the official client: its exception classes.
    classes = {}
    try:
        client(cfg, key + "x").chat.completions.create(model=base, messages=msgs, max_tokens=2)
    except openai.APIStatusError as x:
        classes["wrong key"] = [type(x).__name__, x.status_code]
    try:
        client(cfg).chat.completions.create(model="no-such-model", messages=msgs, max_tokens=2)
    except openai.APIStatusError as x:
        classes["unknown model"] = [type(x).__name__, x.status_code]
    try:
        client(cfg).chat.completions.create(model=base, messages=msgs, max_tokens=-1)
    except openai.APIStatusError as x:
        classes["negative max_tokens"] = [type(x).__name__, x.status_code]
    rep.check(classes.get("wrong key", [""])[0] == "AuthenticationError", "client: wrong key %r" % classes)
    rep.check(classes.get("unknown model", [""])[0] == "NotFoundError", "client: unknown model %r" % classes)
    rep.check(classes.get("negative max_tokens", [""])[0] == "BadRequestError", "client: max_tokens -1 %r" % classes)
    rep.set("client_errors", classes)
    rep.set("errors", results)

    # The server still serves after all that.
    r = client(cfg).chat.completions.create(model=base, messages=msgs, temperature=0, max_tokens=2)
    rep.check(r.usage.completion_tokens >= 1, "no completion after the errors")


def group_overload(cfg, rep):
    """Eight concurrent requests on one slot and one queue place: some are refused with 503,
    the others complete in full."""
    url, key = cfg["base_url"], cfg["api_key"]
    base = base_id(cfg)
    N = cfg["max_tokens"]
    out = [None] * 8
    start = threading.Barrier(8)

    def send(i):
        start.wait()
        out[i] = raw_request(url, "POST", "/v1/completions",
                             {"model": base, "prompt": "Count: %d, " % i, "temperature": 0, "max_tokens": N},
                             auth(key))

    ts = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    statuses = [o[0] if o else None for o in out]
    rep.set("statuses", statuses)
    rep.check(all(s in (200, 503) for s in statuses), "statuses %r" % statuses)
    rep.check(statuses.count(503) >= 1, "no 503 among %r" % statuses)
    rep.check(statuses.count(200) >= 1, "no request completed among %r" % statuses)
    for o in out:
        if o and o[0] == 503:
            rep.check(error_shape(503, o[2]) is None, "503: %s" % error_shape(503, o[2]))
            e = json.loads(o[2])["error"]
            rep.set("overload_error", e)
            rep.check("overloaded" in (e.get("type"), e.get("code")) or e.get("type") == "server_error",
                      "503 type/code %r" % e)
        elif o and o[0] == 200:
            j = json.loads(o[2])
            rep.check(j["usage"]["completion_tokens"] >= 1, "a completed request is empty")
    # Through the client: a 503 is an InternalServerError-family APIStatusError with status 503.
    names = []
    hold = threading.Thread(target=lambda: raw_request(url, "POST", "/v1/completions",
                                                       {"model": base, "prompt": "Hold", "temperature": 0,
                                                        "max_tokens": N}, auth(key)))
    hold2 = threading.Thread(target=lambda: raw_request(url, "POST", "/v1/completions",
                                                        {"model": base, "prompt": "Wait", "temperature": 0,
                                                         "max_tokens": N}, auth(key)))
    hold.start()
    hold2.start()
    time.sleep(0.5)
    try:
        client(cfg).completions.create(model=base, prompt="Refused?", max_tokens=2)
        names.append("completed")
    except openai.APIStatusError as x:
        names.append([type(x).__name__, x.status_code])
    hold.join(300)
    hold2.join(300)
    rep.set("client_overload", names)


if __name__ == "__main__":
    serve_common.main({"api": group_api, "errors": group_errors, "overload": group_overload})
