"""The demo page under a strict Content-Security-Policy (docs/SECURITY.md) chats with the tiny model.

The site is served by a server that sends the policy on every response (page, worker script,
Pyodide, wasm, models), with ``report-uri`` pointing back at it, so a violation anywhere, the
worker included, is recorded. The page must load the model, stream an answer and report no
violation; and the policy must really be in force: an inline script is refused, and the page sees
its violation.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from conftest import SITE, TINY, Guarded, _site_ready

from tools import serve

GGUF = "SmolLM2-135M-Instruct-Q4_1"
POLICY = (
    "default-src 'self'; "
    "script-src 'self' 'wasm-unsafe-eval'; "
    "worker-src 'self'; "
    "connect-src 'self'; "
    "img-src 'self' data:; "
    "style-src 'self'; "
    "font-src 'self'; "
    "object-src 'none'; "
    "base-uri 'none'; "
    "form-action 'none'; "
    "frame-ancestors 'none'; "
    "report-uri /csp-report"
)


class CspHandler(serve.SiteHandler):
    """The site's handler plus the policy header on every response and a violation sink."""

    reports: list[str]

    def end_headers(self) -> None:
        self.send_header("Content-Security-Policy", POLICY)
        super().end_headers()

    def do_POST(self) -> None:
        if self.path != "/csp-report":
            self.send_error(404)
            return
        length = int(self.headers.get("Content-Length") or 0)
        self.reports.append(self.rfile.read(length).decode("utf-8", "replace"))
        self.send_response(204)
        self.end_headers()


@pytest.fixture(scope="module")
def csp_site() -> Iterator[tuple[str, list[str]]]:
    reason = _site_ready()
    if reason:
        pytest.skip(reason)
    reports: list[str] = []
    handler = functools.partial(type("Handler", (CspHandler,), {"reports": reports}), directory=str(SITE))
    server = serve.Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", reports
    finally:
        server.shutdown()
        server.server_close()


INLINE_SCRIPT = """async () => {
  const seen = new Promise((resolve) => document.addEventListener(
    "securitypolicyviolation", (e) => resolve(e.effectiveDirective), { once: true }));
  const s = document.createElement("script");
  s.textContent = "window.inlineRan = true";
  document.head.append(s);
  const directive = await Promise.race([seen, new Promise((r) => setTimeout(() => r(null), 5000))]);
  return { ran: Boolean(window.inlineRan), directive };
}"""


def wait_until_done(g: Guarded, timeout_s: float) -> None:
    """Poll from here: playwright's wait_for_function evaluates its predicate with eval, which the
    policy refuses."""
    deadline = time.monotonic() + timeout_s
    while not g.js("() => Boolean(window.demoState && window.demoState.done)"):
        assert time.monotonic() < deadline, f"the demo did not finish in {timeout_s} s"
        time.sleep(0.25)


def test_demo_chats_under_a_strict_csp(browser: Any, csp_site: tuple[str, list[str]]) -> None:
    base, reports = csp_site
    context = browser.new_context()
    g = Guarded(context.new_page(), base)
    console: list[str] = []
    g.page.on("console", lambda m: console.append(m.text))
    try:
        query = f"prompt={quote('Hello under CSP')}&model={TINY}&max_tokens=12&seed=3&ignore_eos=1"
        g.page.goto(f"{base}index.html?{query}&headless=1")
        wait_until_done(g, 180.0)
        state = g.js("() => window.demoState")
        during_chat, console_during_chat = list(reports), list(console)
        header = g.js("async () => (await fetch('worker.js')).headers.get('content-security-policy')")
        # The control: an inline script must be refused, and the page must see the violation. (Its
        # report-uri POST is sent when Chromium gets round to it: seconds here, minutes on a loaded
        # CI machine, so the sink is not waited for.)
        inline = g.js(INLINE_SCRIPT)
    finally:
        context.close()
    assert state["error"] is None, state["error"]
    assert state["loaded"] == [TINY]
    assert state["text"], "no answer streamed"
    assert state["finish"] in ("stop", "length")
    assert header == POLICY  # the worker's script comes with the policy too
    assert during_chat == [], during_chat
    assert inline["ran"] is False  # the policy is in force...
    # ...and violations are seen
    assert inline["directive"], inline
    assert inline["directive"].startswith("script-src"), inline
    assert all("inline" in r for r in reports[len(during_chat) :]), reports
    assert not [c for c in console_during_chat if "Content Security Policy" in c], console_during_chat
    assert not g.blocked, (g.blocked, g.errors)
    assert not g.errors, (g.blocked, g.errors)


def test_a_gguf_falls_back_to_our_kernels_where_the_csp_stops_llama_cpp(
    browser: Any, csp_site: tuple[str, list[str]]
) -> None:
    """On this software adapter a GGUF goes to llama.cpp (the wasm backend), whose worker is a
    blob: URL that `worker-src 'self'` refuses: the load goes on with our WebGPU kernels and says
    why; the answer comes."""
    base, _reports = csp_site
    context = browser.new_context()
    g = Guarded(context.new_page(), base)
    try:
        query = f"prompt={quote('Hi')}&model={GGUF}&max_tokens=2&seed=3&ignore_eos=1"
        g.page.goto(f"{base}index.html?{query}&headless=1")
        wait_until_done(g, 600.0)
        state = g.js("() => window.demoState")
    finally:
        context.close()
    assert state["error"] is None, state["error"]
    assert state["loaded"] == [GGUF]
    last = state["progress"][-1][1]
    assert last.startswith("Finish loading on WebGPU - "), last
    why = "[backend wgsl: the WebGPU adapter is a fallback one (google swiftshader), but llama.cpp did not"
    assert why in last, last
    assert state["text"], "no answer streamed"
