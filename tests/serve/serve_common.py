"""Helpers shared by the `rlhf serve` test scripts: raw HTTP requests (status, headers and
bytes as the server sent them), SSE parsing, the OpenAI error shape, and the JSON report that
the gtest reads (the last line of stdout)."""
import asyncio
import http.client
import json
import sys
import traceback
import urllib.parse

TIMEOUT = 120  # seconds for any one request


class Report:
    """Collects values for the gtest and failures found here; prints them as one JSON line."""

    def __init__(self):
        self.values = {}
        self.failures = []

    def check(self, ok, what):
        if not ok:
            self.failures.append(what)
            print("FAIL: " + what, file=sys.stderr, flush=True)
        return ok

    def set(self, key, value):
        self.values[key] = value

    def emit(self):
        out = dict(self.values)
        out["failures"] = self.failures
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


def split_url(base_url):
    u = urllib.parse.urlsplit(base_url)
    return u.hostname, u.port


def raw_request(base_url, method, path, body=None, headers=None, timeout=TIMEOUT):
    """One request on a fresh connection: (status, headers dict lower-cased, body bytes)."""
    host, port = split_url(base_url)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        h = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body).encode()
        if body is not None:
            h.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


def auth(key):
    return {"Authorization": "Bearer " + key} if key else {}


def sse_events(data):
    """The data payloads of an SSE byte stream; raises ValueError when it is not
    `data: ...\\n\\n` events throughout."""
    text = data.decode("utf-8")
    if not text.endswith("\n\n"):
        raise ValueError("the stream does not end with a blank line: %r" % text[-40:])
    events = []
    for block in text[:-2].split("\n\n"):
        if not block.startswith("data: ") or "\n" in block:
            raise ValueError("not one `data:` line: %r" % block[:80])
        events.append(block[len("data: "):])
    return events


def error_shape(status, body):
    """The problem with an error response's body (OpenAI: {"error": {message, type, param,
    code}}), or None when it has that shape."""
    try:
        j = json.loads(body)
    except ValueError:
        return "HTTP %d: body is not JSON: %r" % (status, body[:200])
    e = j.get("error") if isinstance(j, dict) else None
    if not isinstance(e, dict):
        return "HTTP %d: no error object: %r" % (status, body[:200])
    for k in ("message", "type", "param", "code"):
        if k not in e:
            return "HTTP %d: error lacks %r: %r" % (status, k, body[:200])
    if not isinstance(e["message"], str) or not e["message"]:
        return "HTTP %d: empty message" % status
    if not isinstance(e["type"], str) or not e["type"]:
        return "HTTP %d: empty type" % status
    return None


def metric(base_url, name, key=None):
    """The value of an unlabelled metric in /metrics, or None."""
    status, _, body = raw_request(base_url, "GET", "/metrics", headers=auth(key), timeout=30)
    if status != 200:
        return None
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            try:
                return float(line.rsplit(" ", 1)[1])
            except ValueError:
                return None
    return None


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def main(groups):
    """Runs GROUP (argv[1]) of `groups` (name -> function(cfg, report), plain or async) with the
    config in argv[2]; an async group is bounded by the config's `deadline_s` (default 900).
    Any exception is a failure in the report, which is printed last whatever happens."""
    group, cfg_path = sys.argv[1], sys.argv[2]
    with open(cfg_path) as f:
        cfg = json.load(f)
    rep = Report()
    try:
        fn = groups[group]
        if asyncio.iscoroutinefunction(fn):
            asyncio.run(asyncio.wait_for(fn(cfg, rep), cfg.get("deadline_s", 900)))
        else:
            fn(cfg, rep)
    except BaseException as e:  # the gtest shows it as a failure
        traceback.print_exc()
        rep.check(False, "%s: %s" % (type(e).__name__, e))
    rep.emit()
