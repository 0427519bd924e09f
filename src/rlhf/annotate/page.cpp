// The annotate pages as C++ raw strings: the HTML of the two pages, their one script and their
// one stylesheet (all ASCII; the pages declare UTF-8 and name non-ASCII characters by escape).
#include "rlhf/annotate/page.h"

namespace rlhf::annotate {
namespace {

// The annotator's page: one item at a time, with the guidelines and the progress.
constexpr std::string_view kAnnotatorPage = R"rlhf(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>rlhf annotate</title>
<link rel="stylesheet" href="/static/annotate.css">
<script src="/static/annotate.js" defer></script>
</head>
<body data-page="annotate">
<div class="wrap">
<header class="top">
  <h1>Which answer is better?</h1>
  <span id="who" class="who"></span>
  <span id="progress" class="progress" title="done / assigned"></span>
</header>
<section id="guidelines" class="guidelines text" aria-label="Guidelines" hidden></section>
<main id="item" hidden>
  <h2 class="item-title">Item <span id="number"></span> <span class="muted">of <span id="count"></span></span></h2>
  <section class="panel prompt">
    <h3 class="label">Prompt</h3>
    <div id="prompt" class="text"></div>
  </section>
  <div class="pair">
    <section class="panel cand a">
      <h3 class="label">A</h3>
      <div id="cand-a" class="text"></div>
    </section>
    <section class="panel cand b">
      <h3 class="label">B</h3>
      <div id="cand-b" class="text"></div>
    </section>
  </div>
  <div class="choices" role="group" aria-label="Your choice">
    <button type="button" id="choose-a" data-choice="A" aria-pressed="false">A is better <span class="key">[1]</span></button>
    <button type="button" id="choose-b" data-choice="B" aria-pressed="false">B is better <span class="key">[2]</span></button>
    <button type="button" id="choose-tie" data-choice="tie" aria-pressed="false">Tie <span class="key">[0]</span></button>
    <button type="button" id="choose-skip" data-choice="skip" aria-pressed="false">Skip <span class="key">[s]</span></button>
  </div>
  <label class="label rationale-label" for="rationale">Rationale (optional; Enter sends, Shift+Enter starts a new line, Esc leaves the box)</label>
  <textarea id="rationale" maxlength="4000" rows="3"></textarea>
</main>
<section id="done" class="panel done" hidden></section>
<div id="actions" class="actions" hidden>
  <button type="button" id="submit" class="primary" hidden>Submit <span class="key">[Enter]</span></button>
  <button type="button" id="undo" disabled>Undo <span class="key">[u]</span></button>
</div>
<p id="message" class="message" role="status" aria-live="polite"></p>
</div>
</body>
</html>
)rlhf";

// The admin page: each annotator's progress, the agreement and the disagreements.
constexpr std::string_view kAdminPage = R"rlhf(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>rlhf annotate: admin</title>
<link rel="stylesheet" href="/static/annotate.css">
<script src="/static/annotate.js" defer></script>
</head>
<body data-page="admin">
<div class="wrap">
<header class="top">
  <h1>Annotation progress</h1>
  <span id="updated" class="muted"></span>
</header>
<p id="summary" class="summary"></p>
<p id="message" class="message" role="status" aria-live="polite"></p>
<section class="panel">
  <h2 class="label">Annotators</h2>
  <table id="annotators" class="grid">
    <thead>
      <tr><th scope="col">Annotator</th><th scope="col">Done / assigned</th><th scope="col">Labels</th><th scope="col">Ties</th><th scope="col">Skips</th><th scope="col">Median s</th></tr>
    </thead>
    <tbody></tbody>
  </table>
</section>
<section class="panel agreement">
  <h2 class="label">Agreement</h2>
  <p><span id="measure">&kappa;</span> = <strong id="kappa">n/a</strong> over <span id="agreement-items">0</span> items with two or more votes (ties are a category of their own, skips are no vote)</p>
</section>
<section class="panel">
  <h2 class="label">Disagreements</h2>
  <p id="no-disagreements" class="muted" hidden>None so far.</p>
  <ol id="disagreements" class="disagreements"></ol>
</section>
</div>
</body>
</html>
)rlhf";

// The script of both pages.
constexpr std::string_view kScript = R"rlhf("use strict";
// The script of both annotate pages (document.body.dataset.page: "annotate" or "admin"). It
// reads the token from the link's fragment (#token=...), sends it as a Bearer header, and puts
// every text from the server on the page with textContent, never as HTML.
// For tests and tools: body[data-busy] while a request is in flight; body[data-ready] and an
// incremented body[data-seq] once its answer (or error) is on the page.
(function () {
  function $(id) { return document.getElementById(id); }

  function setText(el, value) { el.textContent = value == null ? "" : String(value); }

  function token() {
    var params = new URLSearchParams(location.hash.replace(/^#/, ""));
    return params.get("token") || "";
  }

  // A prompt as text: a string as it is, chat messages as "role: content" blocks.
  function promptText(p) {
    if (p == null) return "";
    if (typeof p === "string") return p;
    if (Array.isArray(p)) {
      return p.map(function (m) {
        if (m && typeof m === "object") {
          var content = typeof m.content === "string" ? m.content : JSON.stringify(m.content);
          return (m.role ? m.role + ": " : "") + content;
        }
        return String(m);
      }).join("\n\n");
    }
    return JSON.stringify(p, null, 2);
  }

  // One API request. Resolves to {ok, status, body (parsed JSON or null), message (on error)}.
  async function api(method, path, body) {
    var headers = { "Authorization": "Bearer " + token(), "Accept": "application/json" };
    var init = { method: method, headers: headers, cache: "no-store", credentials: "omit",
                 referrerPolicy: "no-referrer" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    var r;
    try {
      r = await fetch(path, init);
    } catch (e) {
      return { ok: false, status: 0, body: null,
               message: "The server did not answer (" + (e && e.message ? e.message : e) + "). Try again." };
    }
    var data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    var message = "";
    if (!r.ok) {
      message = data && data.error && data.error.message ? String(data.error.message)
                                                         : "HTTP " + r.status + " " + r.statusText;
    }
    return { ok: r.ok, status: r.status, body: data, message: message };
  }

  function begin() {
    document.body.dataset.busy = "1";
    delete document.body.dataset.ready;
  }

  function end() {
    delete document.body.dataset.busy;
    document.body.dataset.seq = String((Number(document.body.dataset.seq) || 0) + 1);
    document.body.dataset.ready = "1";
  }

  function showMessage(text, kind) {
    var m = $("message");
    setText(m, text);
    m.className = "message" + (kind ? " " + kind : "");
  }

  var kNoToken = "This page needs its link's token: open the full link printed by rlhf annotate " +
                 "(it ends in #token=...).";

  // ---- the annotator's page ------------------------------------------------------------------

  function annotatorPage() {
    var buttons = { A: $("choose-a"), B: $("choose-b"), tie: $("choose-tie"), skip: $("choose-skip") };
    var names = { A: "A is better", B: "B is better", tie: "Tie", skip: "Skip" };
    var rationale = $("rationale");
    var state = null;      // the last state the server sent
    var shownId = null;    // the id of the item on the page
    var shownAt = performance.now();
    var selected = null;   // "A", "B", "tie", "skip" or null
    var busy = false;

    function select(choice) {
      selected = choice;
      Object.keys(buttons).forEach(function (k) {
        var on = k === choice;
        buttons[k].classList.toggle("selected", on);
        buttons[k].setAttribute("aria-pressed", on ? "true" : "false");
      });
    }

    // A fresh item: no choice, an empty rationale, its clock from now.
    function resetItem() {
      select(null);
      rationale.value = "";
      shownAt = performance.now();
    }

    function render(s) {
      state = s;
      setText($("who"), s.annotator);
      var guidelines = s.guidelines == null ? "" : String(s.guidelines);
      setText($("guidelines"), guidelines);
      $("guidelines").hidden = guidelines.trim() === "";
      setText($("progress"), s.done + " / " + s.assigned);
      var item = s.item;
      if (item) {
        if (item.id !== shownId) {
          shownId = item.id;
          resetItem();
        }
        $("item").dataset.item = String(item.id);
        setText($("number"), item.number);
        setText($("count"), s.assigned);
        setText($("prompt"), promptText(item.prompt));
        setText($("cand-a"), item.a);
        setText($("cand-b"), item.b);
        $("item").hidden = false;
        $("done").hidden = true;
        document.title = "Item " + item.number + " of " + s.assigned + " - rlhf annotate";
      } else {
        shownId = null;
        select(null);
        delete $("item").dataset.item;
        $("item").hidden = true;
        setText($("done"), "All " + s.assigned + " items done. Thank you!");
        $("done").hidden = false;
        document.title = "Done - rlhf annotate";
      }
      $("submit").hidden = !item;
      Object.keys(buttons).forEach(function (k) { buttons[k].disabled = !item; });
      $("undo").disabled = !s.can_undo;
      $("actions").hidden = false;
    }

    // Sends one POST; renders the new state (or the one an error carries) and the message.
    async function post(path, body, success) {
      busy = true;
      begin();
      var r = await api("POST", path, body);
      busy = false;
      if (r.ok && r.body) {
        var before = shownId;
        render(r.body);
        if (shownId === before) resetItem();  // the same item again: still a fresh start
        // Keys act on the next item at once: leave the rationale box and the choice buttons.
        var active = document.activeElement;
        if (active && (active === rationale || active.closest(".choices"))) active.blur();
        showMessage(success, "ok");
      } else {
        if (r.body && r.body.state) render(r.body.state);
        showMessage(r.message, "error");
      }
      end();
    }

    function choose(choice) {
      if (busy || !state || !state.item) return;
      select(choice);
      showMessage("");
    }

    function submit() {
      if (busy || !state || !state.item) return;
      if (!selected) {
        showMessage("Pick one first: A is better [1], B is better [2], Tie [0] or Skip [s].", "error");
        return;
      }
      var seconds = Math.round((performance.now() - shownAt) / 100) / 10;
      var number = state.item.number;
      var said = names[selected];
      post("/api/label", { item: state.item.id, choice: selected, rationale: rationale.value, seconds: seconds },
           "Kept item " + number + ": " + said + ".");
    }

    function undo() {
      if (busy || !state || !state.can_undo) return;
      post("/api/undo", {}, "Undone: that item is back; the next answer replaces the undone one.");
    }

    Object.keys(buttons).forEach(function (k) {
      buttons[k].addEventListener("click", function () { choose(k); });
    });
    $("submit").addEventListener("click", submit);
    $("undo").addEventListener("click", undo);

    document.addEventListener("keydown", function (e) {
      if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
      if (e.target === rationale) {
        if (e.key === "Escape") {
          e.preventDefault();
          rationale.blur();
        } else if (e.key === "Enter" && !e.shiftKey) {
          e.preventDefault();
          if (!e.repeat) submit();
        }
        return;
      }
      var key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
      if (["1", "2", "0", "s", "u", "Enter"].indexOf(key) < 0) return;
      e.preventDefault();  // Enter on a focused button submits rather than clicking it
      if (busy || e.repeat && (key === "Enter" || key === "u")) return;
      if (key === "1") choose("A");
      else if (key === "2") choose("B");
      else if (key === "0") choose("tie");
      else if (key === "s") choose("skip");
      else if (key === "u") undo();
      else submit();
    });

    async function load() {
      if (!token()) {
        showMessage(kNoToken, "error");
        document.body.dataset.ready = "1";
        return;
      }
      busy = true;
      begin();
      var r = await api("GET", "/api/me");
      busy = false;
      if (r.ok && r.body) {
        render(r.body);
        showMessage("");
      } else {
        showMessage(r.message, "error");
      }
      end();
    }

    window.addEventListener("hashchange", load);
    load();
  }

  // ---- the admin page ------------------------------------------------------------------------

  function adminPage() {
    var measures = { cohen: "Cohen's \u03ba", fleiss: "Fleiss' \u03ba" };
    var inFlight = false;
    var timer = null;

    function cell(row, text, cls) {
      var td = document.createElement("td");
      setText(td, text);
      if (cls) td.className = cls;
      row.appendChild(td);
    }

    function vote(v) {
      if (v === 0 || v === 1) return "candidate " + v;
      return String(v);
    }

    function block(parent, label, text) {
      var wrap = document.createElement("div");
      wrap.className = "block";
      var h = document.createElement("div");
      h.className = "label";
      setText(h, label);
      var body = document.createElement("div");
      body.className = "text panel-text";
      setText(body, text);
      wrap.appendChild(h);
      wrap.appendChild(body);
      parent.appendChild(wrap);
      return body;
    }

    function render(d) {
      var items = Number(d.items) || 0, perItem = Number(d.per_item) || 0;
      setText($("summary"), items + " items, " + perItem + " annotator" + (perItem === 1 ? "" : "s") +
              " per item: " + d.labels + " of " + items * perItem + " labels given.");

      var tbody = $("annotators").tBodies[0];
      tbody.replaceChildren();
      (d.annotators || []).forEach(function (a) {
        var tr = document.createElement("tr");
        tr.dataset.annotator = String(a.name);
        cell(tr, a.name, "name");
        cell(tr, a.done + " / " + a.assigned, "num");
        cell(tr, a.labels, "num");
        cell(tr, a.ties, "num");
        cell(tr, a.skips, "num");
        cell(tr, a.median_seconds == null ? "\u2013" : Number(a.median_seconds).toFixed(1), "num");
        tbody.appendChild(tr);
      });

      var ag = d.agreement || {};
      setText($("measure"), measures[ag.measure] || "\u03ba");
      setText($("kappa"), ag.kappa == null ? "n/a" : Number(ag.kappa).toFixed(3));
      setText($("agreement-items"), ag.items == null ? 0 : ag.items);

      var list = $("disagreements");
      list.replaceChildren();
      (d.disagreements || []).forEach(function (x) {
        var li = document.createElement("li");
        li.dataset.item = String(x.id);
        var title = document.createElement("div");
        title.className = "item-id";
        setText(title, x.id);
        li.appendChild(title);
        block(li, "Prompt", promptText(x.prompt)).classList.add("prompt");
        var pair = document.createElement("div");
        pair.className = "pair";
        block(pair, "Candidate 0", x.candidate_0).classList.add("candidate-0");
        block(pair, "Candidate 1", x.candidate_1).classList.add("candidate-1");
        li.appendChild(pair);
        var votes = document.createElement("ul");
        votes.className = "votes";
        Object.keys(x.votes || {}).forEach(function (name) {
          var v = document.createElement("li");
          v.dataset.annotator = name;
          setText(v, name + ": " + vote(x.votes[name]));
          votes.appendChild(v);
        });
        li.appendChild(votes);
        list.appendChild(li);
      });
      $("no-disagreements").hidden = list.children.length > 0;
      setText($("updated"), "updated " + new Date().toLocaleTimeString());
    }

    async function refresh() {
      if (inFlight) return;
      inFlight = true;
      begin();
      var r = await api("GET", "/api/admin");
      inFlight = false;
      if (r.ok && r.body) {
        render(r.body);
        showMessage("");
      } else {
        showMessage(r.message, "error");
        if ((r.status === 401 || r.status === 403) && timer !== null) {
          clearInterval(timer);
          timer = null;
        }
      }
      end();
    }

    function start() {
      if (timer !== null) clearInterval(timer);
      timer = null;
      if (!token()) {
        showMessage(kNoToken, "error");
        document.body.dataset.ready = "1";
        return;
      }
      timer = setInterval(refresh, 5000);
      refresh();
    }

    window.addEventListener("hashchange", start);
    start();
  }

  function main() {
    var page = document.body.dataset.page;
    if (page === "annotate") annotatorPage();
    else if (page === "admin") adminPage();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
  else main();
})();
)rlhf";

// The style of both pages.
constexpr std::string_view kStyle = R"rlhf(/* The style of both annotate pages: plain, readable, A and B in two equal columns. */
*, *::before, *::after { box-sizing: border-box; }
[hidden] { display: none !important; }
html { color-scheme: light; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #1d2330; background: #f4f5f7; }
.wrap { max-width: 1200px; margin: 0 auto; padding: 20px 24px 48px; }
.top { display: flex; align-items: baseline; gap: 16px; flex-wrap: wrap; border-bottom: 1px solid #d5d9e0;
       padding-bottom: 10px; margin-bottom: 16px; }
h1 { font-size: 20px; margin: 0; flex: 1 1 auto; }
h2, h3 { margin: 0; }
.item-title { font-size: 16px; margin-bottom: 10px; color: #4a5366; font-weight: 600; }
.who { font-weight: 600; }
.progress { font-variant-numeric: tabular-nums; color: #4a5366; background: #e9edf3; border-radius: 12px; padding: 1px 10px; }
.muted { color: #6b7385; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; }
.guidelines { background: #fffbea; border: 1px solid #e6d9a3; border-radius: 6px; padding: 10px 14px;
              margin-bottom: 16px; max-height: 14em; overflow: auto; }
.panel { background: #fff; border: 1px solid #d5d9e0; border-radius: 6px; padding: 12px 14px; margin-bottom: 16px; }
.label { display: block; font-size: 12px; font-weight: 700; letter-spacing: .04em; text-transform: uppercase;
         color: #4a5366; margin: 0 0 6px; }
.pair { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 16px; }
.pair .panel { margin-bottom: 0; }
.cand .text { max-height: 60vh; overflow: auto; }
.cand.a { border-top: 4px solid #3d7be0; }
.cand.b { border-top: 4px solid #e0863d; }
main .pair { margin-bottom: 16px; }
.choices { display: flex; flex-wrap: wrap; gap: 10px; margin-bottom: 14px; }
button { font: inherit; padding: 8px 16px; border: 1px solid #9aa3b2; border-radius: 6px; background: #fff;
         color: #1d2330; cursor: pointer; }
button:hover:not(:disabled) { background: #eef2f8; }
button:focus-visible, textarea:focus-visible { outline: 3px solid #f0b429; outline-offset: 2px; }
button.selected, button.selected:hover:not(:disabled) { background: #1f6feb; border-color: #1f6feb; color: #fff; font-weight: 600; }
button:disabled { opacity: .5; cursor: default; }
button.primary { background: #1d7a46; border-color: #1d7a46; color: #fff; font-weight: 600; }
button.primary:hover:not(:disabled) { background: #17633a; }
.key { opacity: .75; font-size: .9em; font-variant-numeric: tabular-nums; }
textarea { display: block; width: 100%; min-height: 4.5em; font: inherit; padding: 8px 10px; border: 1px solid #9aa3b2;
           border-radius: 6px; resize: vertical; background: #fff; color: inherit; }
.rationale-label { text-transform: none; letter-spacing: 0; font-weight: 600; }
.actions { display: flex; gap: 10px; align-items: center; margin-top: 12px; }
.message { min-height: 1.5em; margin: 12px 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.message:empty, .progress:empty { display: none; }
.message.error { color: #a03a10; }
.message.ok { color: #1f6b3a; }
.done { font-size: 18px; padding: 28px; text-align: center; }
.summary { font-size: 16px; margin: 0 0 12px; }
table.grid { border-collapse: collapse; width: 100%; background: #fff; }
.grid th, .grid td { border: 1px solid #d5d9e0; padding: 6px 10px; text-align: left; vertical-align: top; }
.grid thead th { background: #2f3b52; color: #fff; font-weight: 600; }
.grid td.num { text-align: right; font-variant-numeric: tabular-nums; }
.grid tbody tr:nth-child(even) td { background: #fafbfc; }
#kappa { font-size: 18px; font-variant-numeric: tabular-nums; }
.disagreements { margin: 0; padding-left: 1.4em; }
.disagreements > li { margin-bottom: 18px; }
.disagreements .item-id { font-weight: 600; margin-bottom: 6px; overflow-wrap: anywhere; }
.disagreements .block { margin-bottom: 8px; }
.disagreements .panel-text { background: #fafbfc; border: 1px solid #e3e6eb; border-radius: 4px; padding: 6px 8px;
                             max-height: 16em; overflow: auto; }
.votes { margin: 6px 0 0; padding-left: 1.2em; }
@media (max-width: 700px) { .pair { grid-template-columns: minmax(0, 1fr); } }
)rlhf";

}  // namespace

std::string_view annotator_page_html() { return kAnnotatorPage; }
std::string_view admin_page_html() { return kAdminPage; }
std::string_view page_script() { return kScript; }
std::string_view page_style() { return kStyle; }

}  // namespace rlhf::annotate
