"""Browser test fixtures: the built site on 127.0.0.1, Debian's chromium with WebGPU, and a
network guard on every page that aborts any request to another host and fails the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
SITE = ROOT / "site"
from tools import serve  # noqa: E402

TINY = "tiny-llama-q4f32_1"
TINY_B = "tiny-llama-q0f32"
TINY_GGUF = "tiny-llama-mixed"
"""A tiny random-weight GGUF (tools/make_tiny_gguf.py): on SwiftShader, a software adapter, the
engine runs a GGUF on llama.cpp (the wasm backend)."""
ARTIFACTS = ROOT / "tests" / "artifacts"

# A page holding nothing but the script tag (served from the site's origin by the route below).
BARE_PAGE = '<!doctype html><html><head><script src="/py-worker.js"></script></head><body></body></html>'

# Helpers every test page gets: a deadline on any promise, so nothing a test awaits can hang.
INIT_SCRIPT = """
window.within = (promise, ms, what) => Promise.race([promise, new Promise((_, reject) =>
  setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms))]);
window.describeError = (e) => ({name: e && e.name, message: e && e.message, fields: e && e.fields,
  isPyWorkerError: !!(window.PyWorker && PyWorker.PyWorkerError && e instanceof PyWorker.PyWorkerError)});
"""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: needs a real model (SmolLM2) on SwiftShader; minutes")


def _site_ready() -> str | None:
    if not (SITE / "pyodide" / "pyodide-lock.json").exists():
        return "site/ has no Pyodide distribution: run ./build.sh"
    if not (SITE / "models" / TINY / "mlc-chat-config.json").exists():
        return f"site/ has no {TINY}: run ./build.sh"
    if not Path(serve.CHROMIUM).exists():
        return "no /usr/bin/chromium (tools/setup.sh installs it)"
    return None


@pytest.fixture(scope="session")
def base_url() -> Iterator[str]:
    reason = _site_ready()
    if reason:
        pytest.skip(reason)
    with serve.serving(SITE) as url:
        yield url


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    with serve.chromium() as b:
        yield b


class Guarded:
    """A page whose non-local requests are aborted and recorded (the test fails on any)."""

    def __init__(self, page: Any, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.blocked: list[str] = []
        self.errors: list[str] = []
        page.route("**/*", self._route)
        page.add_init_script(INIT_SCRIPT)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _route(self, route: Any) -> None:
        url = route.request.url
        if not serve.is_local(url):
            self.blocked.append(url)
            route.abort()
        elif url == self.base_url + "bare.html":
            route.fulfill(status=200, content_type="text/html", body=BARE_PAGE)
        elif url == self.base_url + "isolated.html":  # the same page, cross-origin isolated
            headers = serve.ISOLATION_HEADERS
            route.fulfill(status=200, content_type="text/html", headers=headers, body=BARE_PAGE)
        else:
            route.continue_()

    def open(self, path: str) -> Any:
        self.page.goto(self.base_url + path)
        return self.page

    def js(self, script: str, arg: Any = None) -> Any:
        return self.page.evaluate(script, arg)


@pytest.fixture
def guarded(browser: Any, base_url: str) -> Iterator[Guarded]:
    context = browser.new_context(viewport={"width": 1000, "height": 760})
    g = Guarded(context.new_page(), base_url)
    try:
        yield g
    finally:
        context.close()
    assert not g.blocked, f"requests left 127.0.0.1: {g.blocked}"
    assert not g.errors, f"uncaught page errors: {g.errors}"


@pytest.fixture
def server() -> Iterator[tuple[Any, str]]:
    """The site behind a server that counts requests (hosts.CountingServer), for the tab tests."""
    from hosts import CountingServer  # hosts imports this module: import it late

    reason = _site_ready()
    if reason:
        pytest.skip(reason)
    counting = CountingServer()
    with counting.serving() as url:
        yield counting, url


@pytest.fixture
def tabs(browser: Any, server: tuple[Any, str]) -> Iterator[Any]:
    """A guarded browser context on ``server``, for pages that share one engine."""
    from hosts import GuardedContext

    ctx = GuardedContext(browser, server[1])
    try:
        yield ctx
    finally:
        ctx.close()
