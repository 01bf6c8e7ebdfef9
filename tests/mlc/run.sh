#!/usr/bin/env bash
# The mlc backend's tests: the recorded tvmjs contract, the .d.ts check, backend choice (node's
# test runner) and the prebuilt app config (pytest). No GPU, no network, a few seconds.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
export PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
node --test tests/mlc/
"$PYTHON" -m pytest -q tests/mlc
