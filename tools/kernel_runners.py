"""Two runners for the same JS kernel harness (tests/kernels/harness.js), for the kernel tests and bench.

``deno``: Deno's built-in WebGPU on Mesa lavapipe (CPU Vulkan, has shader-f16), one process per
scenario. ``chromium``: Debian's headless chromium on SwiftShader, driven by playwright; the
scenario runs in a module Web Worker of a page served from 127.0.0.1, and every request to any
other host is aborted and fails the test. Both runners return the harness's JSON result.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tools import serve

ROOT = Path(__file__).resolve().parents[1]
DENO = ROOT / "node_modules/@deno/linux-x64-glibc/deno"
CHROMIUM = "/usr/bin/chromium"
MODELS = ROOT / "build/models"
Runner = Callable[[dict[str, Any]], dict[str, Any]]


class Unavailable(RuntimeError):
    """The runner's browser or runtime is not installed on this machine."""


def tiny_model(quant: str) -> str:
    """The tiny Llama of tools/make_tiny_model.py (built on first use), relative to the repo root."""
    out = MODELS / f"tiny-llama-{quant}"
    if not (out / "tensor-cache.json").exists():
        subprocess.run(
            [
                str(ROOT / ".venv/bin/python"),
                "-m",
                "tools.make_tiny_model",
                "--out",
                str(out),
                "--quantization",
                quant,
            ],
            cwd=ROOT,
            check=True,
        )
    return str(out.relative_to(ROOT))


def tiny_gguf(variant: str) -> str:
    """A tiny GGUF of tools/make_tiny_gguf.py (built on first use), relative to the repo root."""
    from tools.make_tiny_gguf import VARIANTS

    out = ROOT / "build/gguf" / VARIANTS[variant][0]
    if not out.exists():
        subprocess.run(
            [
                str(ROOT / ".venv/bin/python"),
                "-m",
                "tools.make_tiny_gguf",
                "--out",
                str(out.parent),
                "--variant",
                variant,
            ],
            cwd=ROOT,
            check=True,
        )
    return str(out.relative_to(ROOT))


def deno_run(scenario: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    """Run one scenario under Deno (lavapipe); raises with Deno's stderr on failure."""
    if not DENO.exists():
        raise Unavailable("npm @deno/linux-x64-glibc is not installed")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(scenario, f)
    env = {**os.environ, "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", tempfile.gettempdir())}
    try:
        proc = subprocess.run(
            # --location: the tokenizer bundle needs a `location` to take its browser path.
            [
                str(DENO),
                "run",
                "--allow-read",
                "--allow-env",
                "--location",
                "http://127.0.0.1/",
                str(ROOT / "tests/kernels/deno_runner.js"),
                f.name,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=ROOT,
        )
    finally:
        os.unlink(f.name)
    if proc.returncode != 0:
        raise RuntimeError(f"deno failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


@contextlib.contextmanager
def serve_root() -> Iterator[str]:
    """The repository root over http://127.0.0.1:<free port>/ (a secure context for WebGPU)."""
    with serve.serving(ROOT) as url:
        yield url


class ChromiumHarness:
    """One headless chromium page on harness.html; counts requests by path for cache tests."""

    def __init__(self, page: Any, base: str, foreign: list[str]) -> None:
        self.page, self.base, self.foreign = page, base, foreign
        self.requests: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))

    def call(self, kind: str, payload: dict[str, Any], timeout_ms: int = 600_000) -> Any:
        self.page.set_default_timeout(timeout_ms)
        result = self.page.evaluate("([k, p]) => window.harness(k, p)", [kind, payload])
        assert not self.foreign, f"requests to other hosts: {self.foreign}"
        return result

    def options(self) -> dict[str, Any]:
        return {
            "baseURL": self.base,
            "tokenizersURL": self.base + "node_modules/@mlc-ai/web-tokenizers/lib/index.js",
            "xgrammarURL": self.base + "node_modules/@mlc-ai/web-xgrammar/lib/index.js",
        }

    def run(self, scenario: dict[str, Any]) -> dict[str, Any]:
        scenario = {**scenario, "options": {**self.options(), "cache": "none", **scenario.get("options", {})}}
        return dict(self.call("scenario", scenario))


@contextlib.contextmanager
def chromium_page(pw: Any = None) -> Iterator[ChromiumHarness]:
    """Headless chromium (SwiftShader WebGPU), a fresh profile, foreign hosts blocked.

    ``pw``: a running sync playwright to reuse (only one may run per thread); else one is started.
    """
    if not Path(CHROMIUM).exists():
        raise Unavailable("chromium is not installed (tools/setup_gpu_env.sh)")
    if pw is None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as own, chromium_page(own) as harness:
            yield harness
        return
    foreign: list[str] = []

    def guard(route: Any) -> None:
        if route.request.url.startswith("http://127.0.0.1:"):
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    with serve_root() as base, tempfile.TemporaryDirectory() as profile:
        ctx = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--enable-unsafe-webgpu",
                "--headless=new",
                "--no-sandbox",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            ctx.route("**/*", guard)
            page = ctx.new_page()
            page.on("console", lambda m: print("[chromium]", m.text))
            harness = ChromiumHarness(page, base, foreign)
            page.goto(base + "tests/kernels/harness.html")
            page.wait_for_function("window.harnessReady === true")
            yield harness
        finally:
            ctx.close()
