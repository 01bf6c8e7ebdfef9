"""Helpers for the shared- and service-worker host tests: a counting server over site/, a
guarded browser context (context-level routes also see worker requests) and page scripts."""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from conftest import INIT_SCRIPT, SITE

from tools import serve

# A page that exposes the proxy and the transport; everything else comes from page scripts.
HOST_PAGE = """<!doctype html><html><head><script type="module">
import * as proxy from "/proxy.js";
import { connect } from "/transport.js";
window.proxy = proxy; window.connect = connect; window.hostPageReady = true;
</script></head><body></body></html>"""

# Opens an engine over connect(kind, {url}) with the tiny model; the app config disables the
# model cache, so every load is visible as shard requests. The transport is wrapped to record
# any reply whose uuid this page never sent (another tab's reply leaking in).
OPEN_ENGINE = """async ([kind, url, model]) => {
  const config = await (await fetch("/app-config.json")).json();
  for (const r of config.model_list) { r.model = new URL(r.model, location.href).href; r.cache = "none"; }
  window.progress = []; window.foreign = []; window.sent = new Set();
  const factory = () => {
    const t = connect(kind, {url});
    const post = t.postMessage.bind(t);
    t.postMessage = (m) => { if (m && m.uuid) sent.add(m.uuid); post(m); };
    t.addEventListener("message", (e) => {
      const m = e.data;
      if (m && m.uuid !== null && m.uuid !== undefined && !sent.has(m.uuid)) foreign.push(m);
    });
    window.transport = t;
    return t;
  };
  window.engine = await within(proxy.CreateWebWorkerMLCEngine(factory, model,
    {appConfig: config, initProgressCallback: (r) => progress.push(r.text)}), 240000, "load");
  return engine.modelId;
}"""

# Starts a stream without waiting for it: window.runs[name] settles with its text and chunks.
START_STREAM = """([name, request, stopAfter]) => {
  window.runs = window.runs || {};
  window.firstChunk = window.firstChunk || {};
  runs[name] = (async () => {
    const stream = await engine.chat.completions.create({...request, stream: true});
    let text = "", n = 0, finish = null;
    for await (const c of stream) {
      if (n === 0) firstChunk[name] = true;
      n += 1;
      if (c.choices.length) {
        text += c.choices[0].delta.content || "";
        finish = c.choices[0].finish_reason || finish;
      }
      if (stopAfter && n >= stopAfter) break;
    }
    return {text, n, finish, streamId: stream.streamId};
  })();
  runs[name].catch(() => {});
}"""

AWAIT_STREAM = "([name, ms]) => within(runs[name], ms, name)"

# What the page sees stored under the loader's names: Cache API URLs and IndexedDB keys.
STORED = """async (name) => {
  const cached = (await (await caches.open(name)).keys()).map((r) => r.url);
  const dbs = await indexedDB.databases();
  if (!dbs.some((d) => d.name === name)) return {cached, idb: []};
  const db = await new Promise((ok, fail) => {
    const r = indexedDB.open(name); r.onsuccess = () => ok(r.result); r.onerror = () => fail(r.error); });
  if (!db.objectStoreNames.contains("files")) { db.close(); return {cached, idb: []}; }
  const idb = await new Promise((ok, fail) => {
    const r = db.transaction("files").objectStore("files").getAllKeys();
    r.onsuccess = () => ok(r.result.map(String)); r.onerror = () => fail(r.error); });
  db.close();
  return {cached, idb};
}"""
CACHE_NAME = "py_worker-wgsl"  # js_glue/kernels/loader.js: its Cache API cache and IndexedDB database


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def request(text: str, seed: int) -> dict[str, Any]:
    """A short sampled chat request: the same seed must give the same text on any host."""
    return {"messages": user(text), "seed": seed, "temperature": 0.9, "max_tokens": 20}


LONG = {"messages": user("Count for ever."), "max_tokens": 400, "ignore_eos": True}


def open_engine(page: Any, kind: str, url: str, model: str) -> list[str]:
    loaded: list[str] = page.evaluate(OPEN_ENGINE, [kind, url, model])
    return loaded


def stream(page: Any, name: str, req: dict[str, Any], stop_after: int = 0) -> None:
    page.evaluate(START_STREAM, [name, req, stop_after])


def result(page: Any, name: str, ms: int = 120000) -> dict[str, Any]:
    out: dict[str, Any] = page.evaluate(AWAIT_STREAM, [name, ms])
    return out


class CountingServer:
    """site/ on 127.0.0.1 with a count of GET requests per path (proves what was loaded)."""

    def __init__(self) -> None:
        self.hits: collections.Counter[str] = collections.Counter()

    def shard_hits(self) -> int:
        return sum(n for path, n in self.hits.items() if "/params_shard_" in path)

    @contextlib.contextmanager
    def serving(self, site: Path = SITE, mounts: dict[str, Path] | None = None) -> Iterator[str]:
        """``mounts``: URL folder ("/test-gguf/") -> a directory whose files are served there too
        (test models that must not be part of site/ and its app-config.json)."""
        hits = self.hits
        mounted = dict(mounts or {})

        class Handler(serve.SiteHandler):
            def do_GET(self) -> None:
                hits[self.path.split("?")[0]] += 1
                super().do_GET()

            def translate_path(self, path: str) -> str:
                clean = unquote(urlsplit(path).path)
                for prefix, folder in mounted.items():
                    name = clean[len(prefix) :]
                    if clean.startswith(prefix) and name and "/" not in name and name not in (".", ".."):
                        return str(folder / name)
                return super().translate_path(path)

        with serve.serving(site, handler_class=Handler) as url:
            yield url


class GuardedContext:
    """A browser context whose non-local requests (pages and workers alike) are aborted and
    recorded; pages get the host page at /host.html and the `within` helper."""

    def __init__(self, browser: Any, base_url: str) -> None:
        self.base_url = base_url
        self.context = browser.new_context()
        self.blocked: list[str] = []
        self.errors: list[str] = []
        self.context.route("**/*", self._route)

    def _route(self, route: Any) -> None:
        url = route.request.url
        if not serve.is_local(url):
            self.blocked.append(url)
            route.abort()
        elif url == self.base_url + "host.html":
            route.fulfill(status=200, content_type="text/html", body=HOST_PAGE)
        else:
            route.continue_()

    def page(self, path: str = "host.html", ready: str = "window.hostPageReady === true") -> Any:
        """A new page on ``path`` (the host page by default), once ``ready`` holds."""
        page = self.context.new_page()
        page.add_init_script(INIT_SCRIPT)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.goto(self.base_url + path)
        page.wait_for_function(ready)
        return page

    def close(self) -> None:
        self.context.close()
        assert not self.blocked, f"requests left 127.0.0.1: {self.blocked}"
        assert not self.errors, f"uncaught page errors: {self.errors}"


@contextlib.contextmanager
def app_page(browser: Any, base_url: str) -> Iterator[Any]:
    """A user's app (served under /app/, its index.html setting ``window.appReady``) in a fresh
    guarded context: its own storage, nothing cached yet."""
    ctx = GuardedContext(browser, base_url)
    try:
        yield ctx.page("app/index.html", "window.appReady === true")
    finally:
        ctx.close()


def python_user_worker(python: str) -> str:
    """A user's own module worker (as a notebook kernel is) that boots the site's Pyodide, loads
    py-worker and runs ``python`` with ``ARGS`` = the posted message as JSON text; it posts
    ``{ok: <the code's last value>}`` or ``{error}``. ``python`` must not contain a backtick."""
    return (
        """import { loadPyodide } from "/pyodide/pyodide.mjs";
const indexURL = new URL("/pyodide/", location.href).href;
const pyodide = await loadPyodide({ indexURL, lockFileURL: indexURL + "pyodide-lock.json" });
await pyodide.loadPackage(["py-worker"]);
self.onmessage = async (event) => {
  try {
    pyodide.globals.set("ARGS", JSON.stringify(event.data));
    self.postMessage({ ok: await pyodide.runPythonAsync(`"""
        + python
        + """`) });
  } catch (err) {
    self.postMessage({ error: String(err) });
  }
};
self.postMessage({ ready: true });
"""
    )


def ask_worker(page: Any, script: str, message: Any, timeout_ms: int) -> Any:
    """Start the module worker ``script`` (relative to the page), post ``message`` once it says
    it is ready, and return its one reply."""
    return page.evaluate(
        """([script, message, ms]) => within(new Promise((resolve, reject) => {
          const worker = new Worker(new URL(script, location.href), { type: "module" });
          worker.onerror = (e) => reject(new Error(e.message));
          worker.onmessage = (e) => {
            if (e.data.ready) worker.postMessage(message);
            else { worker.terminate(); resolve(e.data); }
          };
        }), ms, script)""",
        [script, message, timeout_ms],
    )
