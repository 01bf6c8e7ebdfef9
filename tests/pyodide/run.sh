#!/usr/bin/env bash
# The pytest-pyodide suite on both runtimes: assembles the offline Pyodide distribution
# (tools/pyodide_dist.py: cached, so a rerun needs no network), then runs tests/pyodide in
# node and in headless Chromium (selenium + Debian's chromedriver, no network).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-.venv/bin/python}"
"$PY" tools/pyodide_dist.py --out dist/pyodide
export SE_OFFLINE=true SE_AVOID_STATS=true
exec "$PY" -m pytest tests/pyodide -p no:cacheprovider --dist-dir dist/pyodide --runtime node,chrome "$@"
