"""Serve site/ on 127.0.0.1, or drive headless Chromium through the demo page from the terminal.

``python tools/serve.py [--port N]`` serves the site and prints its URL. With ``--prompt`` it
instead opens the demo page in headless Chromium (Debian's /usr/bin/chromium with WebGPU on),
asks the prompt with the chosen model and prints the streamed answer as it arrives, then exits.
Every request to a host other than 127.0.0.1 is aborted, so the run proves the site is offline.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

ROOT = Path(__file__).resolve().parent.parent

MIME_TYPES = {
    ".wasm": "application/wasm",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".json": "application/json",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css",
    ".zip": "application/zip",
    ".whl": "application/zip",
    ".bin": "application/octet-stream",
    ".map": "application/json",
    ".model": "application/octet-stream",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--enable-unsafe-webgpu",
    "--enable-features=Vulkan",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-sandbox",
]


ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
}
"""Sent with every file: the page and its workers become cross-origin isolated, so llama.cpp (the
wasm backend) may run on several threads (SharedArrayBuffer). Without them it runs one."""


class SiteHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with the MIME types browsers insist on (application/wasm for streaming), and
    the cross-origin isolation headers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.extensions_map = {**self.extensions_map, **MIME_TYPES}
        super().__init__(*args, **kwargs)

    def end_headers(self) -> None:
        # Fresh files on every reload during development; the engine caches models itself.
        self.send_header("Cache-Control", "no-cache")
        for name, value in ISOLATION_HEADERS.items():
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextlib.contextmanager
def serving(site: Path, port: int = 0, handler_class: type[SiteHandler] | None = None) -> Iterator[str]:
    """Serve ``site`` on 127.0.0.1 in a background thread; yields the base URL. Tests may pass a
    ``SiteHandler`` subclass (to count or alter requests)."""
    handler = functools.partial(handler_class or SiteHandler, directory=str(site))
    server = Server(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def is_local(url: str) -> bool:
    """Only the page's own origin on loopback (and inline data/blob URLs) may be fetched."""
    parts = urlsplit(url)
    return parts.scheme in ("data", "blob") or parts.hostname == "127.0.0.1"


def guard_page(page: Any, url: str, pages: dict[str, str]) -> list[str]:
    """Abort every non-local request of ``page`` (they are listed in the returned list) and answer
    ``url + name`` with the HTML of ``pages[name]`` (cross-origin isolated, as the site's pages)."""
    blocked: list[str] = []

    def route(r: Any) -> None:
        if not is_local(r.request.url):
            blocked.append(r.request.url)
            r.abort()
        elif r.request.url.startswith(url) and r.request.url[len(url) :] in pages:
            page_html = pages[r.request.url[len(url) :]]
            r.fulfill(status=200, content_type="text/html", headers=ISOLATION_HEADERS, body=page_html)
        else:
            r.continue_()

    page.route("**/*", route)
    return blocked


@contextlib.contextmanager
def chromium(headless: bool = True) -> Iterator[Any]:
    """A playwright browser on Debian's chromium with WebGPU on (playwright makes a fresh profile)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=headless, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def show_progress(text: str) -> None:
    """One updating status line on stderr while the model loads; the last one (which says the
    backend and why) whole."""
    done = text.startswith("Finish loading")
    print(f"\r\033[K{text if done else text[:110]}", end="\n" if done else "", file=sys.stderr, flush=True)


def ask(base_url: str, prompt: str, model: str | None, timeout_s: float, options: dict[str, str]) -> int:
    """Drive the demo page: load the model, send the prompt, print the stream; 0 on success."""
    with chromium() as browser:
        page = browser.new_page()
        blocked: list[str] = []

        def route(r: Any) -> None:
            if is_local(r.request.url):
                r.continue_()
            else:
                blocked.append(r.request.url)
                r.abort()

        page.route("**/*", route)
        page.expose_function("__pyworkerDelta", lambda text: print(text, end="", flush=True))
        page.expose_function("__pyworkerProgress", show_progress)
        page.on("console", lambda m: m.type == "error" and print(f"[page] {m.text}", file=sys.stderr))
        query = f"?prompt={quote(prompt)}" + (f"&model={quote(model)}" if model else "")
        query += "".join(f"&{k}={quote(v)}" for k, v in options.items())
        page.goto(base_url + "index.html" + query)
        page.wait_for_function("window.demoState && window.demoState.done", timeout=timeout_s * 1000)
        state = page.evaluate("window.demoState")
        print()
        if state.get("error"):
            print(f"error: {state['error']}", file=sys.stderr)
        else:
            print(f"[{state.get('stats', '')}]", file=sys.stderr)
        if blocked:
            print(f"blocked non-local requests: {blocked}", file=sys.stderr)
        return 1 if state.get("error") or blocked else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--site", type=Path, default=ROOT / "site")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--prompt", help="ask this in headless Chromium, print the answer, exit")
    parser.add_argument("--model", help="model id for --prompt (default: the page's default)")
    parser.add_argument("--max-tokens", type=int, default=256, help="answer length limit for --prompt")
    parser.add_argument("--temperature", type=float, help="for --prompt (default: the model's)")
    parser.add_argument("--seed", type=int, help="for --prompt")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for --prompt")
    args = parser.parse_args()
    if not (args.site / "index.html").exists():
        print(f"no site at {args.site}: run ./build.sh first", file=sys.stderr)
        return 2
    with serving(args.site, 0 if args.prompt else args.port) as url:
        if args.prompt:
            options = {"max_tokens": str(args.max_tokens)}
            for key in ("temperature", "seed"):
                if getattr(args, key) is not None:
                    options[key] = str(getattr(args, key))
            return ask(url, args.prompt, args.model, args.timeout, options)
        print(f"Serving {args.site} at {url}  (Ctrl-C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
