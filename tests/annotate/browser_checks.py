"""`rlhf annotate` end to end in headless Chromium: two annotators label ten pairs on the page
with real clicks and key presses (a rationale, an undo, a skip), the server is killed with
SIGKILL half-way and restarted, both continue where they were, the admin page shows the agreement
worked out by hand, and `rlhf annotate export` writes the expected majorities. Along the way:
hostile markup in the data renders as text, and the API refuses what it must refuse.

Usage: browser_checks.py --cli PATH_TO_rlhf --workdir DIR
Needs selenium (the dev venv), /usr/bin/chromium and /usr/bin/chromedriver.
Prints one line per check; exits 1 with the reason at the first failure.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
import zlib

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 20  # seconds for the page to answer one action
SERVER_START = 60  # seconds for the server to print its links

# ---- the items and the plan ------------------------------------------------------------------

HOSTILE_SCRIPT = "<script>window.__pwned=1</script>"
HOSTILE_IMG = '"><img src=x onerror="window.__pwned=1">'
HOSTILE = 4  # the index of the item that holds them


def make_items():
    items = []
    for i in range(10):
        items.append({"id": "item-%d" % i,
                      "input_text": "Question %d: how should a careful assistant answer this?" % i,
                      "candidate_0": "Answer zero to question %d, short and plain." % i,
                      "candidate_1": "Answer one to question %d, longer\nand on two lines." % i})
    items[HOSTILE]["input_text"] = "Repeat this: " + HOSTILE_SCRIPT
    items[HOSTILE]["candidate_0"] = "Candidate zero " + HOSTILE_IMG
    items[HOSTILE]["candidate_1"] = "Candidate one <b>bold?</b> " + HOSTILE_SCRIPT
    return items


# Each item's choice per annotator in the ORIGINAL candidate order: 0 (candidate_0 better),
# 1 (candidate_1 better), "tie" or "skip" (no vote).
PLAN = {
    #   alice  bob
    0: (0, 0),
    1: (1, 1),
    2: (0, 0),
    3: ("tie", "tie"),
    4: (0, 1),
    5: (1, 1),
    6: (1, "tie"),
    7: (0, 0),
    8: ("tie", 0),
    9: (1, "skip"),
}
ANNOTATORS = ("alice", "bob")


def expected_kappa():
    """Cohen's kappa from the plan: items where both voted (a skip is no vote), ties a category."""
    pairs = [(a, b) for a, b in PLAN.values() if a != "skip" and b != "skip"]
    n = len(pairs)
    p_o = sum(a == b for a, b in pairs) / n
    cats = {c for p in pairs for c in p}
    p_e = sum((sum(a == c for a, _ in pairs) / n) * (sum(b == c for _, b in pairs) / n) for c in cats)
    return (p_o - p_e) / (1 - p_e), n


# By hand: 9 items with two votes (item 9 has bob's skip). They agree on items 0, 1, 2, 3, 5, 7:
# p_o = 6/9. Alice: 0 x4 (0,2,4,7), 1 x3 (1,5,6), tie x2 (3,8); bob: 0 x4 (0,2,7,8), 1 x3
# (1,4,5), tie x2 (3,6). p_e = (4*4 + 3*3 + 2*2)/81 = 29/81.
# kappa = (54/81 - 29/81) / (52/81) = 25/52 = 0.48077 -> "0.481".
KAPPA_BY_HAND = 25 / 52


def expected_export(keep_ties):
    """id -> (choice, tie, agreement, voters) for the rows export writes."""
    rows = {}
    for i, votes in PLAN.items():
        cast = [(name, v) for name, v in zip(ANNOTATORS, votes) if v != "skip"]
        if not cast:
            continue
        counts = {}
        for _, v in cast:
            counts[v] = counts.get(v, 0) + 1
        best = max(counts.values())
        winners = [v for v, c in counts.items() if c == best]
        if len(winners) > 1:
            continue  # no majority (1 vote against 1)
        win = winners[0]
        if win == "tie" and not keep_ties:
            continue
        rows["item-%d" % i] = (0 if win == "tie" else win, win == "tie", best / len(cast),
                               sorted(n for n, _ in cast))
    return rows


# ---- reporting -------------------------------------------------------------------------------


class CheckFailed(Exception):
    pass


def check(ok, what, detail=""):
    if not ok:
        raise CheckFailed(what + (" -- " + detail if detail else ""))
    print("ok    " + what, flush=True)


def info(what):
    print("info  " + what, flush=True)


# ---- the server ------------------------------------------------------------------------------


class Server:
    """`rlhf annotate ...` as a child process; its stderr kept in a log and parsed for the links."""

    LINK = re.compile(r"\[rlhf\] ([A-Za-z0-9._-]+):\s+(http://\S+)")
    ON = re.compile(r"\[rlhf\] annotating on (http://\S+)")

    def __init__(self, cli, args, log_path):
        self.cmd = [cli, "annotate"] + args
        self.log_path = log_path
        self.proc = None
        self.lines = []
        self.cond = threading.Condition()

    def start(self):
        self.lines = []
        self.links = {}
        self.base = None
        log = open(self.log_path, "a")
        log.write("$ " + " ".join(self.cmd) + "\n")
        log.flush()
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.PIPE, text=True)

        def pump(proc=self.proc):
            for line in proc.stderr:
                log.write(line)
                log.flush()
                with self.cond:
                    self.lines.append(line.rstrip("\n"))
                    self.cond.notify_all()
            with self.cond:
                self.cond.notify_all()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.time() + SERVER_START
        with self.cond:
            while True:
                for line in self.lines:
                    m = self.ON.search(line)
                    if m:
                        self.base = m.group(1).rstrip("/")
                if self.base:
                    break
                if self.proc.poll() is not None:
                    raise CheckFailed("rlhf annotate exited with %d before serving:\n%s"
                                      % (self.proc.returncode, "\n".join(self.lines)))
                if time.time() > deadline:
                    raise CheckFailed("rlhf annotate printed no 'annotating on' line in %d s:\n%s"
                                      % (SERVER_START, "\n".join(self.lines)))
                self.cond.wait(0.2)
            for line in self.lines:
                m = self.LINK.search(line)
                if m:
                    self.links[m.group(1)] = m.group(2)
        return self

    def token(self, who):
        return urllib.parse.urlsplit(self.links[who]).fragment.split("token=", 1)[1]

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self):
        """SIGTERM; the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
            return "no exit within 30 s of SIGTERM"


def request(base, method, path, body=None, headers=None):
    """One raw request: (status, parsed JSON or None, headers lower-cased, raw bytes)."""
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        h = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=body, headers=h)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading a body it refuses
        r = conn.getresponse()
        raw = r.read()
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        return r.status, data, {k.lower(): v for k, v in r.getheaders()}, raw
    finally:
        conn.close()


def bearer(token):
    return {"Authorization": "Bearer " + token}


def me(server, who):
    status, data, _, raw = request(server.base, "GET", "/api/me", headers=bearer(server.token(who)))
    if status != 200 or not isinstance(data, dict):
        raise CheckFailed("GET /api/me as %s: %d %r" % (who, status, raw[:300]))
    return data


def brief(state):
    """What must not change when a request is refused: progress, current item, undo."""
    item = state.get("item") or {}
    return (state.get("done"), state.get("assigned"), item.get("id"), item.get("a"), state.get("can_undo"))


def read_events(out):
    path = os.path.join(out, "annotations.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# ---- the browser -----------------------------------------------------------------------------


def new_browser():
    o = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,900", "--no-first-run", "--no-default-browser-check"):
        o.add_argument(a)
    o.binary_location = CHROMIUM
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=o)


class Page:
    """One annotator's browser on the annotate page."""

    def __init__(self, name, items, console):
        self.name = name
        self.items = items
        self.driver = new_browser()
        self.console = console
        self.shown = {}  # item id -> [x, y]: candidate x was A, y was B

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def el(self, css):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def seq(self):
        return int(self.js("return Number(document.body.dataset.seq || 0)"))

    def wait_idle(self, after_seq=None, what="the page to answer"):
        def done(_):
            return self.js("var d = document.body.dataset; return !!d.ready && !d.busy && "
                           "Number(d.seq || 0) > arguments[0]", -1 if after_seq is None else after_seq)
        try:
            WebDriverWait(self.driver, WAIT, poll_frequency=0.05).until(done)
        except TimeoutException:
            raise CheckFailed("%s: waited %d s for %s; #message: %r" % (self.name, WAIT, what, self.message()))

    def open(self, url):
        self.driver.get("about:blank")  # a link that differs only after '#' would not load the page again
        self.driver.get(url)
        try:
            WebDriverWait(self.driver, WAIT, poll_frequency=0.05).until(
                lambda _: self.js("return !!document.body && document.body.dataset.ready === '1'"))
        except TimeoutException:
            raise CheckFailed("%s: %s never became ready" % (self.name, url))

    def message(self):
        try:
            return self.js("var m = document.getElementById('message'); return m ? m.textContent : null")
        except Exception:  # noqa: BLE001 - only for a failure message
            return None

    def progress(self):
        return self.el("#progress").text

    def current(self):
        """The id of the item on the page (None when the item area is hidden)."""
        return self.js("var i = document.getElementById('item'); return i.hidden ? null : (i.dataset.item || null)")

    def text_of(self, css):
        return self.js("return document.querySelector(arguments[0]).textContent", css)

    def learn_order(self):
        """Which candidate the page shows as A and as B: [x, y] in the original order."""
        iid = self.current()
        item = self.items[iid]
        a, b = self.text_of("#cand-a"), self.text_of("#cand-b")
        if (a, b) == (item["candidate_0"], item["candidate_1"]):
            order = [0, 1]
        elif (a, b) == (item["candidate_1"], item["candidate_0"]):
            order = [1, 0]
        else:
            raise CheckFailed("%s: %s shows A=%r B=%r, not its two candidates" % (self.name, iid, a, b))
        if iid in self.shown and self.shown[iid] != order:
            raise CheckFailed("%s: %s was shown as %r before and now as %r" % (self.name, iid, self.shown[iid], order))
        self.shown[iid] = order
        check(self.text_of("#prompt") == item["input_text"], "%s: %s shows its prompt" % (self.name, iid))
        return order

    def page_choice(self, choice):
        """The button for a choice in the original order, given the order on the page."""
        if choice in ("tie", "skip"):
            return choice
        order = self.shown[self.current()]
        return "A" if order[0] == choice else "B"

    def keys(self, *keys):
        ActionChains(self.driver).send_keys(*keys).perform()

    def choose(self, choice, how):
        pick = self.page_choice(choice)
        button = {"A": "#choose-a", "B": "#choose-b", "tie": "#choose-tie", "skip": "#choose-skip"}[pick]
        if how == "key":
            self.keys({"A": "1", "B": "2", "tie": "0", "skip": "s"}[pick])
        else:
            self.el(button).click()
        b = self.el(button)
        check("selected" in (b.get_attribute("class") or "").split() and b.get_attribute("aria-pressed") == "true",
              "%s: %s %s (%s) is selected and pressed" % (self.name, "pressed" if how == "key" else "clicked", pick,
                                                         choice))
        others = [s for s in ("#choose-a", "#choose-b", "#choose-tie", "#choose-skip") if s != button]
        check(all(self.el(s).get_attribute("aria-pressed") == "false" for s in others),
              "%s: the other choices are not pressed" % self.name)

    def submit(self, how, what="the label"):
        before = self.seq()
        if how == "key":
            self.keys(Keys.ENTER)
        else:
            self.el("#submit").click()
        self.wait_idle(before, what)

    def label(self, index, how_choose="key", how_submit="key", rationale=None):
        """Labels item `index` with the plan's choice; checks the page moves on."""
        iid = "item-%d" % index
        choice = PLAN[index][ANNOTATORS.index(self.name)]
        check(self.current() == iid, "%s: the page shows %s" % (self.name, iid), "it shows %r" % self.current())
        done = int(self.progress().split(" / ")[0])
        self.learn_order()
        self.choose(choice, how_choose)
        if rationale is not None:
            box = self.el("#rationale")
            box.click()
            box.send_keys(rationale)
        self.submit(how_submit, "%s's label for %s" % (self.name, iid))
        check(self.progress() == "%d / 10" % (done + 1), "%s: progress %d / 10 after %s" % (self.name, done + 1, iid),
              "it shows %r; #message %r" % (self.progress(), self.message()))
        nxt = "item-%d" % (index + 1) if index < 9 else None
        check(self.current() == nxt, "%s: the next item (%s) is shown" % (self.name, nxt), "it shows %r" % self.current())
        check(self.el("#rationale").get_attribute("value") == "", "%s: the rationale box is cleared" % self.name)
        check(not self.js("return document.querySelector('.choices .selected') !== null"),
              "%s: no choice is selected on the new item" % self.name)

    def undo(self, how):
        before = self.seq()
        if how == "key":
            self.keys("u")
        else:
            self.el("#undo").click()
        self.wait_idle(before, "the undo")

    def collect_console(self):
        try:
            for e in self.driver.get_log("browser"):
                self.console.append((self.name, e))
        except Exception as e:  # noqa: BLE001 - a browser without logs is not a failure of the page
            info("%s: no browser log (%s)" % (self.name, e))

    def quit(self):
        try:
            self.collect_console()
            self.driver.quit()
        except Exception:  # noqa: BLE001
            pass


# ---- a tiny PNG decoder (8-bit RGB / RGBA, not interlaced) -------------------------------------


def png_rows(data):
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise CheckFailed("the screenshot is not a PNG")
    pos, idat, head = 8, [], None
    while pos + 8 <= len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            head = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    w, h, depth, ctype, _, _, interlace = head
    if depth != 8 or ctype not in (2, 6) or interlace:
        raise CheckFailed("the screenshot's PNG format (depth %d, colour type %d) is not decoded here" % (depth, ctype))
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = w * bpp
    prev = bytearray(stride)
    rows = []
    at = 0
    for _ in range(h):
        f = raw[at]
        line = bytearray(raw[at + 1:at + 1 + stride])
        at += 1 + stride
        if f == 1:
            for x in range(bpp, stride):
                line[x] = (line[x] + line[x - bpp]) & 255
        elif f == 2:
            for x in range(stride):
                line[x] = (line[x] + prev[x]) & 255
        elif f == 3:
            for x in range(stride):
                left = line[x - bpp] if x >= bpp else 0
                line[x] = (line[x] + ((left + prev[x]) >> 1)) & 255
        elif f == 4:
            for x in range(stride):
                a = line[x - bpp] if x >= bpp else 0
                b = prev[x]
                c = prev[x - bpp] if x >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    return w, h, bpp, rows


def colours_of(png):
    w, h, bpp, rows = png_rows(png)
    seen = set()
    for line in rows:
        for x in range(0, w * bpp, bpp):
            seen.add((line[x], line[x + 1], line[x + 2]))
    return w, h, seen


def has_colour(seen, rgb, tol=3):
    return any(all(abs(c[i] - rgb[i]) <= tol for i in range(3)) for c in seen)


# ---- the run ---------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", required=True)
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()
    cli = os.path.abspath(args.cli)
    work = os.path.abspath(args.workdir)
    os.makedirs(work, exist_ok=True)
    out = os.path.join(work, "out")
    shutil.rmtree(out, ignore_errors=True)  # a session left by an earlier run of these checks
    open(os.path.join(work, "server.log"), "w").close()

    items = make_items()
    by_id = {it["id"]: it for it in items}
    with open(os.path.join(work, "pairs.jsonl"), "w") as f:
        for it in items:
            f.write(json.dumps(it) + "\n")
    guidelines = "Pick the answer that is correct first, then clear.\nTie when both are equally good or bad."
    with open(os.path.join(work, "guidelines.txt"), "w") as f:
        f.write(guidelines + "\n")

    kappa, kappa_items = expected_kappa()
    check(abs(kappa - KAPPA_BY_HAND) < 1e-12 and kappa_items == 9,
          "the plan's Cohen's kappa is %.5f over %d items (25/52 by hand)" % (kappa, kappa_items))

    server = Server(cli, ["--pairs", os.path.join(work, "pairs.jsonl"), "--output", out, "--annotators", "alice,bob",
                          "--per-item", "2", "--guidelines", os.path.join(work, "guidelines.txt"), "--port", "0"],
                    os.path.join(work, "server.log"))
    pages = []
    console = []
    try:
        run(server, items, by_id, guidelines, out, work, cli, pages, console)
    finally:
        for p in pages:
            p.quit()
        if server.proc is not None and server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(30)


def run(server, items, by_id, guidelines, out, work, cli, pages, console):
    server.start()
    check(set(server.links) >= {"alice", "bob", "admin"} and server.links["admin"].split("#")[0].endswith("/admin"),
          "the server prints alice's, bob's and the admin link", repr(server.links))
    tokens = {who: server.token(who) for who in ("alice", "bob", "admin")}
    check(len(set(tokens.values())) == 3 and all(re.fullmatch(r"[0-9a-f]{32,}", t) for t in tokens.values()),
          "three distinct tokens of 128 bits or more", repr(tokens))
    session = os.path.join(out, "session.json")
    check(os.path.exists(session) and (os.stat(session).st_mode & 0o777) == 0o600, "session.json has mode 0600",
          oct(os.stat(session).st_mode) if os.path.exists(session) else "absent")

    # The pages hold no data, and go out with the Content-Security-Policy.
    status, _, headers, raw = request(server.base, "GET", "/")
    csp = headers.get("content-security-policy", "")
    check(status == 200 and "text/html" in headers.get("content-type", ""), "GET / is a page")
    check("default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp,
          "GET / has the Content-Security-Policy", csp)
    check(b"item-0" not in raw and tokens["alice"].encode() not in raw and b"Question" not in raw,
          "the page holds no item and no token")
    for path, kind in (("/static/annotate.js", "javascript"), ("/static/annotate.css", "text/css"), ("/admin", "text/html")):
        status, _, headers, _ = request(server.base, "GET", path)
        check(status == 200 and kind in headers.get("content-type", ""), "GET %s is %s" % (path, kind),
              "%d %s" % (status, headers.get("content-type")))

    alice = Page("alice", by_id, console)
    pages.append(alice)
    bob = Page("bob", by_id, console)
    pages.append(bob)

    # ---- the page without its token, then with it
    alice.open(server.base + "/")
    check("token" in (alice.message() or ""), "without #token the page says the link needs its token",
          repr(alice.message()))
    alice.open(server.links["alice"])
    bob.open(server.links["bob"])
    for p in (alice, bob):
        check(p.el("#who").text == p.name, "%s: #who names the annotator" % p.name)
        check(p.progress() == "0 / 10", "%s: progress 0 / 10" % p.name, repr(p.progress()))
        check(p.text_of("#guidelines").strip() == guidelines and p.el("#guidelines").is_displayed(),
              "%s: the guidelines are shown" % p.name)
        check(p.el("#number").text == "1", "%s: #number is 1" % p.name)
        check(p.el("#undo").get_attribute("disabled") is not None, "%s: Undo is disabled with nothing to undo" % p.name)
        check(not p.el("#done").is_displayed(), "%s: #done is hidden" % p.name)

    # Two equal columns, side by side.
    ra = alice.js("return document.getElementById('cand-a').parentElement.getBoundingClientRect().toJSON()")
    rb = alice.js("return document.getElementById('cand-b').parentElement.getBoundingClientRect().toJSON()")
    check(abs(ra["top"] - rb["top"]) < 1 and abs(ra["width"] - rb["width"]) < 2 and ra["right"] <= rb["left"],
          "A and B are two equal columns side by side", "%r %r" % (ra, rb))
    check(alice.js("return getComputedStyle(document.getElementById('cand-a')).whiteSpace") == "pre-wrap",
          "the candidates keep their line breaks (white-space: pre-wrap)")

    # ---- alice, items 0-4
    n_events = len(read_events(out))
    alice.learn_order()
    alice.keys(Keys.ENTER)
    time.sleep(0.3)
    check(alice.progress() == "0 / 10" and alice.current() == "item-0" and len(read_events(out)) == n_events,
          "alice: Enter with nothing selected sends nothing")
    check((alice.message() or "").strip() != "", "alice: ... and says what to do", repr(alice.message()))
    alice.label(0, "key", "key")

    typed_rationale = "Is clearer; 1 fact, sources."
    alice.learn_order()
    alice.choose(PLAN[1][0], "click")
    box = alice.el("#rationale")
    box.click()
    box.send_keys(typed_rationale)
    ActionChains(alice.driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
    box.send_keys("uses 2 sources")
    check(box.get_attribute("value") == typed_rationale + "\nuses 2 sources" and alice.current() == "item-1",
          "alice: keys typed in the rationale (1, s, u, Shift+Enter) are text, not commands",
          repr(box.get_attribute("value")))
    before = alice.seq()
    box.send_keys(Keys.ENTER)  # Enter in the box sends
    alice.wait_idle(before, "the label sent from the rationale box")
    check(alice.progress() == "2 / 10" and alice.current() == "item-2", "alice: Enter in the rationale box sends")
    check(alice.js("return document.activeElement !== document.getElementById('rationale')"),
          "alice: the rationale box is left after sending")

    # item 2: a tie first, then undo with `u`, then the planned label.
    alice.learn_order()
    alice.choose("tie", "key")
    alice.submit("key")
    check(alice.progress() == "3 / 10" and alice.current() == "item-3", "alice: a first label for item-2 is kept")
    check(alice.el("#undo").get_attribute("disabled") is None, "alice: Undo is enabled")
    alice.undo("key")
    check(alice.progress() == "2 / 10" and alice.current() == "item-2", "alice: `u` brings item-2 back (2 / 10)",
          "%r %r" % (alice.progress(), alice.current()))
    alice.label(2, "click", "click")
    alice.label(3, "click", "key")

    # item 4: hostile markup renders as text.
    check(alice.current() == "item-%d" % HOSTILE, "alice: the hostile item is shown")
    hostile_checks(alice, by_id)
    alice.learn_order()
    alice.choose(PLAN[HOSTILE][0], "key")
    png = alice.driver.get_screenshot_as_png()
    with open(os.path.join(work, "alice.png"), "wb") as f:
        f.write(png)
    w, h, seen = colours_of(png)
    check(w > 600 and h > 400 and len(seen) > 40, "the screenshot is not blank (%dx%d, %d colours)" % (w, h, len(seen)))
    check(has_colour(seen, (0x1f, 0x6f, 0xeb)) and has_colour(seen, (0x3d, 0x7b, 0xe0)),
          "the screenshot shows the page's own colours (selected button, A's mark): the stylesheet applied")
    alice.submit("key")
    check(alice.progress() == "5 / 10" and alice.current() == "item-5", "alice: item-4 labelled, 5 / 10")

    # ---- bob, items 0-3
    bob.label(0, "key", "key")
    bob.learn_order()
    bob.choose(PLAN[1][1], "click")
    box = bob.el("#rationale")
    box.click()
    box.send_keys("B names its sources")
    box.send_keys(Keys.ESCAPE)
    check(bob.js("return document.activeElement !== document.getElementById('rationale')"),
          "bob: Esc leaves the rationale box")
    bob.keys("0")
    check(box.get_attribute("value") == "B names its sources"
          and bob.el("#choose-tie").get_attribute("aria-pressed") == "true",
          "bob: after Esc, `0` picks Tie instead of typing", repr(box.get_attribute("value")))
    bob.choose(PLAN[1][1], "key")
    bob.submit("key")
    check(bob.progress() == "2 / 10" and bob.current() == "item-2", "bob: item-1 labelled with a rationale")
    bob.label(2, "click", "click")
    bob.undo("click")
    check(bob.progress() == "2 / 10" and bob.current() == "item-2", "bob: the Undo button brings item-2 back")
    bob.label(2, "key", "key")
    bob.label(3, "key", "click")

    check(alice.current() == "item-5" and bob.current() == "item-4", "alice is at item-5, bob at item-4")

    # ---- the API refuses what it must (the server as it runs before the kill)
    api_checks(server, out, tokens)
    csrf_checks(server, out, alice, work)
    alice.open(server.links["alice"])
    check(alice.current() == "item-5" and alice.progress() == "5 / 10",
          "alice: still at item-5 after the refused requests")

    # ---- SIGKILL, an answer the page cannot get, restart, same links
    before_kill = {p.name: (p.progress(), p.current(), p.text_of("#cand-a")) for p in (alice, bob)}
    n_events = len(read_events(out))
    server.kill9()
    info("server killed with SIGKILL")
    alice.learn_order()
    alice.choose(PLAN[5][0], "key")
    alice.submit("key", "the label sent to a dead server")
    check(alice.progress() == "5 / 10" and (alice.message() or "").strip() != "",
          "alice: with the server down the page shows an error and stays", repr(alice.message()))
    check(len(read_events(out)) == n_events, "nothing was written while the server was down")

    server.start()
    check({w: server.token(w) for w in ("alice", "bob", "admin")} == tokens, "the restarted server keeps the tokens")
    alice.open(server.links["alice"])
    bob.open(server.links["bob"])
    for p in (alice, bob):
        now = (p.progress(), p.current(), p.text_of("#cand-a"))
        check(now == before_kill[p.name], "%s: continues at %s (%s) after the restart" % (p.name, now[1], now[0]),
              "before %r, after %r" % (before_kill[p.name], now))

    # ---- both finish
    for i in range(5, 10):
        alice.label(i, "key" if i % 2 else "click", "click" if i == 7 else "key",
                    rationale="short reason %d" % i if i == 6 else None)
    hostile_checks(bob, by_id)
    for i in range(4, 10):
        bob.label(i, "click" if i in (5, 8) else "key", "key")
    for p in (alice, bob):
        check(p.progress() == "10 / 10" and p.current() is None and not p.el("#item").is_displayed(),
              "%s: 10 / 10 and the item area is hidden" % p.name)
        check(p.el("#done").is_displayed() and "All 10 items done" in p.el("#done").text,
              "%s: the page says all 10 items are done" % p.name, repr(p.el("#done").text))
    # Undo from the end: the last item comes back, and the same choice again.
    bob.undo("key")
    check(bob.progress() == "9 / 10" and bob.current() == "item-9", "bob: `u` after the end brings item-9 back")
    bob.label(9, "key", "key")

    # ---- the admin page
    admin = alice
    admin.open(server.base + "/admin#token=" + tokens["alice"])
    check((admin.message() or "").strip() != "" and not admin.driver.find_elements(By.CSS_SELECTOR, "tr[data-annotator]"),
          "the admin page with an annotator's token shows the refusal and no data", repr(admin.message()))
    admin.open(server.links["admin"])
    check(admin.el("#kappa").text == "%.3f" % KAPPA_BY_HAND, "admin: kappa %.3f" % KAPPA_BY_HAND,
          repr(admin.el("#kappa").text))
    check(admin.el("#measure").text == "Cohen's \u03ba", "admin: the measure is Cohen's kappa",
          repr(admin.el("#measure").text))
    check(admin.el("#agreement-items").text == "9", "admin: over 9 items", repr(admin.el("#agreement-items").text))
    for who, skips in (("alice", "0"), ("bob", "1")):
        cells = [td.text for td in admin.driver.find_elements(By.CSS_SELECTOR, '#annotators tr[data-annotator="%s"] td' % who)]
        check(len(cells) == 6 and cells[0] == who and cells[1] == "10 / 10" and cells[4] == skips,
              "admin: %s's row shows 10 / 10 and %s skip(s)" % (who, skips), repr(cells))
    entries = admin.driver.find_elements(By.CSS_SELECTOR, "#disagreements [data-item]")
    got = {e.get_attribute("data-item"): e.text for e in entries}
    check(set(got) == {"item-4", "item-6", "item-8"}, "admin: the disagreements are items 4, 6 and 8", repr(sorted(got)))
    expect_votes = {"item-4": ("alice: candidate 0", "bob: candidate 1"), "item-6": ("alice: candidate 1", "bob: tie"),
                    "item-8": ("alice: tie", "bob: candidate 0")}
    for iid, votes in expect_votes.items():
        check(all(v in got[iid] for v in votes), "admin: %s shows %s" % (iid, " and ".join(votes)), repr(got[iid]))
        it = by_id[iid]
        check(all(t in got[iid] for t in (it["input_text"], it["candidate_0"].split("\n")[0])),
              "admin: %s shows its prompt and candidates as text" % iid)
    check(admin.js("return window.__pwned === undefined ? null : window.__pwned") is None
          and not admin.driver.find_elements(By.CSS_SELECTOR, "#disagreements img, #disagreements script, #disagreements b"),
          "admin: the hostile item's markup did not become elements")

    # ---- what the log holds
    log_checks(out, alice, bob, typed_rationale)

    for p in pages:
        p.collect_console()
    bad = [(who, e["message"]) for who, e in console
           if e.get("level") == "SEVERE" and ("Refused" in e["message"] or "Uncaught" in e["message"]
                                              or "Content Security Policy" in e["message"])]
    check(not bad, "no script error or CSP refusal in the browsers' consoles", repr(bad[:5]))

    rc = server.stop()
    check(rc == 0, "the server exits 0 on SIGTERM", repr(rc))

    export_checks(cli, out, work, by_id)


def hostile_checks(page, by_id):
    it = by_id["item-%d" % HOSTILE]
    check(page.current() == it["id"], "%s: the hostile item is on the page" % page.name)
    prompt = page.el("#prompt").text
    ca, cb = page.el("#cand-a").text, page.el("#cand-b").text
    check(HOSTILE_SCRIPT in prompt, "%s: the prompt shows <script>...</script> as text" % page.name, repr(prompt))
    check(HOSTILE_IMG in ca + cb and HOSTILE_SCRIPT in ca + cb and "<b>bold?</b>" in ca + cb,
          "%s: the candidates show the markup as text" % page.name, repr((ca, cb)))
    check(page.js("return window.__pwned === undefined ? null : window.__pwned") is None,
          "%s: no hostile script ran (window.__pwned is unset)" % page.name)
    check(not page.driver.find_elements(By.CSS_SELECTOR, "#item img, #item script, #item b"),
          "%s: no img, script or b element inside the item" % page.name)


def api_checks(server, out, tokens):
    base = server.base
    a_before, b_before = brief(me(server, "alice")), brief(me(server, "bob"))
    n_events = len(read_events(out))
    a_item = a_before[2]
    label = {"item": a_item, "choice": "A", "rationale": "", "seconds": 1.0}

    status, data, _, _ = request(base, "GET", "/health")
    check(status == 200 and data == {"status": "ok"}, "GET /health answers ok")
    status, data, _, raw = request(base, "POST", "/api/label", label)
    check(status == 401 and isinstance(data, dict) and "message" in data.get("error", {}),
          "POST /api/label without a token: 401 with an error message", "%d %r" % (status, raw[:200]))
    status, _, _, _ = request(base, "POST", "/api/label", label, headers=bearer("0" * 32))
    check(status == 401, "POST /api/label with an unknown token: 401", str(status))
    status, _, _, _ = request(base, "GET", "/api/me")
    check(status == 401, "GET /api/me without a token: 401", str(status))

    status, data, _, raw = request(base, "POST", "/api/label", label, headers=bearer(tokens["bob"]))
    check(status in (403, 409), "bob labelling alice's current item (not his): %d" % status, repr(raw[:300]))
    if status == 409:
        check(isinstance(data, dict) and isinstance(data.get("state"), dict)
              and brief(data["state"]) == b_before, "... and the 409 carries bob's current state", repr(raw[:300]))

    status, _, _, raw = request(base, "GET", "/api/admin", headers=bearer(tokens["alice"]))
    check(status == 403, "an annotator's token on GET /api/admin: 403", "%d %r" % (status, raw[:200]))
    status, data, _, _ = request(base, "GET", "/api/admin", headers=bearer(tokens["admin"]))
    check(status == 200 and data.get("items") == 10 and data.get("per_item") == 2, "the admin token on GET /api/admin: 200")
    status, _, _, _ = request(base, "GET", "/api/me", headers=bearer(tokens["admin"]))
    check(status in (401, 403), "the admin token is not an annotator's: %d" % status)

    form = urllib.parse.urlencode({"item": a_item, "choice": "A"}).encode()
    status, _, _, raw = request(base, "POST", "/api/label", form,
                                headers=dict(bearer(tokens["alice"]), **{
                                    "Content-Type": "application/x-www-form-urlencoded",
                                    "Origin": "http://evil.example"}))
    check(status in (403, 415), "a form post from another site: %d" % status, repr(raw[:200]))
    status, _, _, raw = request(base, "POST", "/api/label", json.dumps(label).encode(),
                                headers=dict(bearer(tokens["alice"]), **{"Content-Type": "text/plain"}))
    check(status == 415, "a JSON body sent as text/plain (what a form can send): 415", "%d %r" % (status, raw[:200]))
    status, _, _, raw = request(base, "POST", "/api/label", label,
                                headers=dict(bearer(tokens["alice"]), Origin="http://evil.example"))
    check(status == 403, "a JSON label with another site's Origin: 403", "%d %r" % (status, raw[:200]))
    status, _, _, raw = request(base, "POST", "/api/undo", {},
                                headers=dict(bearer(tokens["alice"]), Origin="http://evil.example"))
    check(status == 403, "an undo with another site's Origin: 403", "%d %r" % (status, raw[:200]))

    big = dict(label, rationale="x" * (70 * 1024))
    try:
        status, _, _, raw = request(base, "POST", "/api/label", big, headers=bearer(tokens["alice"]))
    except (ConnectionError, http.client.HTTPException) as e:
        raise CheckFailed("a body over 64 KiB: the connection failed without an answer (%s)" % e)
    check(status == 413, "a body over 64 KiB: 413", "%d %r" % (status, raw[:200]))
    status, data, _, raw = request(base, "POST", "/api/label", dict(label, rationale="y" * 4001),
                                   headers=bearer(tokens["alice"]))
    check(status == 400 and (data or {}).get("error", {}).get("field") == "rationale",
          "a rationale of 4,001 characters: 400 naming the field", "%d %r" % (status, raw[:200]))
    status, data, _, raw = request(base, "POST", "/api/label", dict(label, choice="C"), headers=bearer(tokens["alice"]))
    check(status == 400 and (data or {}).get("error", {}).get("field") == "choice",
          "an unknown choice: 400 naming the field", "%d %r" % (status, raw[:200]))

    check(brief(me(server, "alice")) == a_before and brief(me(server, "bob")) == b_before,
          "the refused requests changed neither alice's nor bob's state")
    check(len(read_events(out)) == n_events, "the refused requests wrote nothing to annotations.jsonl")


def csrf_checks(server, out, page, work):
    """Pages of another origin (a data: URL, a file) that post a form to the API: nothing is kept."""
    a_before = brief(me(server, "alice"))
    n_events = len(read_events(out))
    action = server.base + "/api/label"
    item = a_before[2]
    pages = [
        ("a data: URL page posting an urlencoded form",
         "data:text/html;charset=utf-8," + urllib.parse.quote(
             '<form id="f" method="post" action="%s"><input name="item" value="%s"><input name="choice" value="A">'
             '</form><script>document.getElementById("f").submit()</script>' % (action, item))),
    ]
    path = os.path.join(work, "csrf.html")
    with open(path, "w") as f:
        f.write('<form id="f" method="post" enctype="text/plain" action="%s">'
                '<input name=\'{"item":"%s","choice":"A","x":"\' value=\'"}\'></form>'
                '<script>document.getElementById("f").submit()</script>' % (action, item))
    pages.append(("a file:// page posting a text/plain form shaped as JSON", "file://" + path))
    for what, url in pages:
        page.driver.get(url)
        try:
            WebDriverWait(page.driver, 5, poll_frequency=0.1).until(
                lambda d: d.current_url.startswith(server.base))
            info("%s: the browser sent it; the server answered %r" % (
                what, page.driver.find_element(By.TAG_NAME, "body").text[:160]))
        except TimeoutException:
            info("%s: the browser did not send it (%s)" % (what, page.driver.current_url[:60]))
        check(len(read_events(out)) == n_events and brief(me(server, "alice")) == a_before,
              "%s: nothing kept" % what)


def log_checks(out, alice, bob, typed_rationale):
    events = read_events(out)
    final = {}
    undos = {"alice": 0, "bob": 0}
    for e in events:
        key = (e.get("annotator"), e.get("item"))
        if e.get("event") == "label":
            if key in final:
                raise CheckFailed("the log: %s labels %s twice without an undo between" % key)
            final[key] = e
        elif e.get("event") == "undo":
            if key not in final:
                raise CheckFailed("the log: %s's undo of %s follows no label of it" % key)
            del final[key]
            undos[e["annotator"]] += 1
        else:
            raise CheckFailed("the log holds an unknown event: %r" % e)
    check(True, "the log: every undo follows a label of its item, no item labelled twice in a row")
    check(undos == {"alice": 1, "bob": 2}, "the log: alice undid once, bob twice", repr(undos))
    check(len(final) == 20, "the log: 20 labels stand (10 items x 2 annotators)", str(len(final)))
    for (who, iid), e in final.items():
        page = alice if who == "alice" else bob
        want = PLAN[int(iid.split("-")[1])][ANNOTATORS.index(who)]
        if e.get("choice") != want or e.get("shown") != page.shown[iid]:
            raise CheckFailed("the log: %s's label for %s is %r shown %r; the plan says %r shown %r"
                              % (who, iid, e.get("choice"), e.get("shown"), want, page.shown[iid]))
        if not isinstance(e.get("seconds"), (int, float)) or e["seconds"] < 0 or e["seconds"] > 600:
            raise CheckFailed("the log: %s's label for %s has seconds %r" % (who, iid, e.get("seconds")))
    check(True, "the log: every standing label is the planned choice in the original order, with the order shown")
    first_tie = [e for e in events if e.get("annotator") == "alice" and e.get("item") == "item-2" and e["event"] == "label"]
    check([e["choice"] for e in first_tie] == ["tie", 0], "the log: alice's undone tie on item-2, then 0")
    check(final[("alice", "item-1")].get("rationale") == typed_rationale + "\nuses 2 sources",
          "the log: alice's rationale with its line break", repr(final[("alice", "item-1")].get("rationale")))
    check(final[("bob", "item-1")].get("rationale") == "B names its sources", "the log: bob's rationale")
    check(final[("alice", "item-6")].get("rationale") == "short reason 6", "the log: a rationale after the restart")


def export_checks(cli, out, work, by_id):
    for keep_ties in (False, True):
        dest = os.path.join(work, "prefs_ties.jsonl" if keep_ties else "prefs.jsonl")
        cmd = [cli, "annotate", "export", out, "--output", dest] + (["--keep-ties"] if keep_ties else [])
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        check(r.returncode == 0, "`%s` exits 0" % " ".join(cmd[1:]), r.stderr[-2000:])
        with open(dest) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        want = expected_export(keep_ties)
        got = {row.get("id"): row for row in rows}
        check(len(rows) == len(got) and set(got) == set(want),
              "export%s: the rows are %s" % (" --keep-ties" if keep_ties else "", ", ".join(sorted(want))),
              repr(sorted(got)))
        for iid, (choice, tie, agreement, voters) in want.items():
            row, it = got[iid], by_id[iid]
            ok = (row.get("choice") == choice and bool(row.get("tie", False)) == tie
                  and abs(float(row.get("agreement", -1)) - agreement) < 1e-9
                  and sorted(row.get("annotators") or []) == voters
                  and all(row.get(k) == it[k] for k in ("input_text", "candidate_0", "candidate_1")))
            if not ok:
                raise CheckFailed("export: %s is %r; expected choice %r tie %r agreement %r annotators %r"
                                  % (iid, row, choice, tie, agreement, voters))
        check(True, "export%s: every row's choice, tie, agreement, annotators and texts are as planned"
              % (" --keep-ties" if keep_ties else ""))
        if not keep_ties:
            summary = r.stderr + r.stdout
            check("6 written" in summary and "1 tie" in summary and "3 without a majority" in summary
                  and "Cohen's kappa %.3f over 9 items" % KAPPA_BY_HAND in summary,
                  "export: the summary counts 6 written, 1 tie, 3 without a majority, kappa %.3f over 9 items"
                  % KAPPA_BY_HAND, summary.strip()[-600:])


if __name__ == "__main__":
    try:
        main()
    except CheckFailed as e:
        print("FAIL  " + str(e), flush=True)
        sys.exit(1)
    except Exception:  # noqa: BLE001 - any other error is a failure too, with its trace
        traceback.print_exc()
        print("FAIL  the checks stopped on an unexpected error", flush=True)
        sys.exit(1)
    print("PASS  all browser checks", flush=True)
