"""A real OpenAI-compatible server for the remote-model tests: llama-cpp-python's, serving the
SmolLM2 GGUF on a free 127.0.0.1 port, from its own venv (tools/setup.sh builds it in
build/llama-server-venv; PY_WORKER_LLAMA_PYTHON names another interpreter). Also a server that
accepts connections and never answers (a slow server) and a port nothing listens on (a server
that is down). tests/browser/test_remote.py and tests/pyodide/test_remote.py use them.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / "build" / "llama-server-venv" / "bin" / "python"
START_GUARD_S = 180
"""Only a hang guard: how long the server may take to load the model."""


def llama_python() -> str | None:
    """The interpreter that has llama_cpp.server, or None (the tests then skip)."""
    python = os.environ.get("PY_WORKER_LLAMA_PYTHON") or str(VENV_PYTHON)
    if not Path(python).exists():
        return None
    probe = subprocess.run([python, "-c", "import llama_cpp.server"], capture_output=True)
    return python if probe.returncode == 0 else None


def gguf() -> Path:
    from tools.convert_smollm2 import default_gguf

    return Path(default_gguf())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    """``python -m llama_cpp.server`` on 127.0.0.1; ``url`` is its OpenAI base URL (``…/v1``)."""

    def __init__(self, python: str, log: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log
        args = ["--model", str(gguf()), "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--n_threads", "1", "--n_ctx", "2048", *extra]
        self._out = log.open("w")
        self.proc = subprocess.Popen(
            [python, "-m", "llama_cpp.server", *args], stdout=self._out, stderr=subprocess.STDOUT
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_GUARD_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/models", timeout=2) as r:
                    json.load(r)
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"llama_cpp.server did not start in {START_GUARD_S} s")

    def disconnects(self) -> int:
        """How many streams the server stopped because their client left (its own log line)."""
        return self.log.read_text().count("Disconnected from client")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._out.close()


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """A base URL whose server accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def down_url() -> str:
    """A base URL on a loopback port that nothing listens on (connection refused)."""
    return f"http://127.0.0.1:{free_port()}/v1"


def record(model_id: str, url: str, **extra: object) -> dict[str, object]:
    """A ``backend: "remote"`` record; the headers stand for a credential the tests look for."""
    return {"model_id": model_id, "backend": "remote", "base_url": url, "headers": SECRET_HEADERS, **extra}


SECRET = "sk-test-credential-4242"
SECRET_HEADERS = {"authorization": f"Bearer {SECRET}"}

# Requests of one seed at temperature 0 (the server's sampling is then reproducible). An EOS
# bias keeps a long answer going, so that an interrupt finds it mid-stream.
USER = [{"role": "user", "content": "What is the capital of France?"}]
GREEDY = {"temperature": 0, "seed": 7}
EOS_ID = "2"  # SmolLM2's <|im_end|>
LONG = {**GREEDY, "max_tokens": 1500, "logit_bias": {EOS_ID: -100}}


@contextlib.contextmanager
def started(log_dir: Path) -> Iterator[LlamaServer]:
    """A running server for a test module (its log under ``log_dir``), stopped at the end; the
    module is skipped where llama_cpp.server is not installed."""
    import pytest

    python = llama_python()
    if python is None:
        pytest.skip("llama_cpp.server is not importable (tools/setup.sh builds build/llama-server-venv)")
    server = LlamaServer(python, log_dir / "server.log")
    try:
        yield server
    finally:
        server.close()
