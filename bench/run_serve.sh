#!/usr/bin/env bash
# Serving throughput and time to first token: `rlhf serve` at concurrency 1, 8 and 32 (closed
# loop: each client sends its next request when its last one ends), against the same requests
# served one after another (concurrency 1) and against llama.cpp's own CPU runtime decoding the
# same number of sequences together, on one GGUF file (`rlhf export --format gguf` of the
# default model, f32), same prompts, greedy, same new tokens, same threads, in one run.
# Each setting runs --repeat times (3); printed are the medians over the runs of tokens/s and of
# the median time to first token, and their ratios. Driver: bench/serve_load.py.
#
# llama.cpp: llama-cpp-python (its ctypes bindings of the llama.cpp it vendors), built from its
# PyPI source release into .venv when absent (PyPI has no binary wheel of it; the wheel of
# llama-cpp-cffi 0.4.42 needs GCC 14's libstdc++ (__cxa_call_terminate) and pins transformers
# < 5, llama-cpp-py-sync's needs glibc 2.38: neither loads on Debian 12).
# Usage: bench/run_serve.sh [--prompts N] [--new-tokens N] [--concurrency "1 8 32"]
#                           [--threads T] [--repeat R] [--build DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
PROMPTS=32 NEW=64 CONC="1 8 32" REPEAT=3 BUILD=build PY=.venv/bin/python THREADS=$(nproc)
while [ $# -gt 0 ]; do
  case "$1" in
    --prompts) PROMPTS=$2; shift 2 ;;
    --new-tokens) NEW=$2; shift 2 ;;
    --concurrency) CONC=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
LLAMA_CPP_PYTHON=llama-cpp-python==0.3.36
RLHF=$BUILD/rlhf
[ -x "$RLHF" ] || RLHF=$(find "$BUILD" -maxdepth 3 -type f -name rlhf -perm -u+x | head -1)
[ -x "$RLHF" ] || { echo "rlhf not built in $BUILD" >&2; exit 1; }
[ -x "$PY" ] || { echo "$PY absent: run scripts/setup --dev" >&2; exit 1; }
if ! "$PY" -c "import llama_cpp" 2>/dev/null; then
  echo "# installing $LLAMA_CPP_PYTHON into .venv (built from source, CPU only)" >&2
  CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
  CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=OFF" \
    "${PY%/python}/pip" install -q --no-deps "$LLAMA_CPP_PYTHON" >&2
  "$PY" -c "import diskcache" 2>/dev/null || "${PY%/python}/pip" install -q diskcache >&2
fi

WORK=$BUILD/bench-serve
mkdir -p "$WORK"
GGUF=$WORK/smollm2-135m-instruct.f32.gguf
if [ ! -f "$GGUF" ]; then
  "$RLHF" export --model smollm2-135m-instruct --format gguf --output "$GGUF" >&2
fi

# The prompts: the summarization requests of bench/run_infer.sh, cut to 400 characters, cycled.
"$PY" - "$PROMPTS" "$WORK/prompts.jsonl" <<'EOF'
import json, sys
n, out = int(sys.argv[1]), sys.argv[2]
texts = [json.loads(l)["input_text"] for l in open("examples/prompts.jsonl") if l.strip()]
try:
    texts += [json.loads(l)["input_text"] for l in open("../shared/data/course/sample_prompt.jsonl") if l.strip()]
except OSError:
    pass
with open(out, "w") as f:
    for i in range(n):
        f.write(json.dumps({"prompt": "Summarize in less than 50 words.\n\n" + texts[i % len(texts)][:400]}) + "\n")
EOF

KEY=bench-$$
LOG=$WORK/serve.log
MAXC=$(echo $CONC | tr ' ' '\n' | sort -n | tail -1)
"$RLHF" serve --model "$GGUF" --dtype fp32 --threads "$THREADS" --port 0 --api-key "$KEY" --max-batch "$MAXC" \
  --max-queue 1024 2> "$LOG" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
URL=
for _ in $(seq 1 600); do
  URL=$(sed -n 's/.*\[rlhf\] serving on \(http:[^ ]*\).*/\1/p' "$LOG" | head -1)
  [ -n "$URL" ] && break
  kill -0 $SERVER 2>/dev/null || { cat "$LOG" >&2; exit 1; }
  sleep 0.2
done
[ -n "$URL" ] || { echo "rlhf serve did not start" >&2; cat "$LOG" >&2; exit 1; }
MODEL=$("$PY" -c "import json,sys,urllib.request as u; r=u.Request(sys.argv[1]+'/v1/models',headers={'Authorization':'Bearer '+sys.argv[2]}); print(json.load(u.urlopen(r))['data'][0]['id'])" "$URL" "$KEY")
# One warm-up request (the first decode steps allocate).
"$PY" bench/serve_load.py http --url "$URL" --key "$KEY" --model "$MODEL" --prompts "$WORK/prompts.jsonl" \
  --new-tokens 4 --concurrency 1 > /dev/null 2>&1 || true
for r in $(seq 1 "$REPEAT"); do
  for c in $CONC; do
    "$PY" bench/serve_load.py http --url "$URL" --key "$KEY" --model "$MODEL" --prompts "$WORK/prompts.jsonl" \
      --new-tokens "$NEW" --concurrency "$c" > "$WORK/rlhf.$c.$r.json"
  done
done
kill -TERM $SERVER; wait $SERVER || true; trap - EXIT
for r in $(seq 1 "$REPEAT"); do
  for c in $CONC; do  # llama.cpp's own log goes to llama.log
    "$PY" bench/serve_load.py llama --gguf "$GGUF" --prompts "$WORK/prompts.jsonl" --new-tokens "$NEW" \
      --concurrency "$c" --threads "$THREADS" > "$WORK/llama.$c.$r.json" 2>> "$WORK/llama.log"
  done
done

echo "# serving, $PROMPTS prompts x $NEW new tokens, greedy, fp32 (f32 GGUF), $THREADS threads, medians of $REPEAT runs: $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
"$PY" - "$WORK" "$REPEAT" $CONC <<'EOF'
import json, statistics, sys
work, repeat, conc = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

def load(side, c):
    """The runs of one side at one concurrency: medians of tokens/s and of the median TTFT; the
    texts and errors of the first run."""
    runs = [json.load(open("%s/%s.%s.%d.json" % (work, side, c, r))) for r in range(1, repeat + 1)]
    return {"tokens_per_s": statistics.median(x["tokens_per_s"] for x in runs),
            "ttft_median_ms": statistics.median(x["ttft_median_ms"] for x in runs),
            "texts": runs[0]["texts"], "errors": [e for x in runs for e in x.get("errors", [])]}

seq = load("rlhf", conc[0])
print("%-5s %11s %9s %11s %13s %11s %9s %9s %6s" % ("conc", "rlhf tok/s", "vs seq", "rlhf ttft", "llama tok/s",
                                                   "llama ttft", "tok/s x", "ttft x", "same"))
for c in conc:
    r, l = load("rlhf", c), load("llama", c)
    same = sum(1 for a, b in zip(r["texts"], l["texts"]) if a == b)
    print("%-5s %11.1f %8.2fx %9.0fms %13.1f %9.0fms %8.2fx %8.2fx %3d/%d" % (
        c, r["tokens_per_s"], r["tokens_per_s"] / seq["tokens_per_s"], r["ttft_median_ms"], l["tokens_per_s"],
        l["ttft_median_ms"], r["tokens_per_s"] / l["tokens_per_s"], r["ttft_median_ms"] / l["ttft_median_ms"],
        same, len(r["texts"])))
    if r["errors"]:
        print("  rlhf errors at concurrency %s: %d, first %s" % (c, len(r["errors"]), r["errors"][0]))
print("(tok/s x: rlhf / llama.cpp; ttft x: rlhf / llama.cpp, lower is better for rlhf; same: identical texts)")
EOF
