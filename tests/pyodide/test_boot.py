"""Pyodide boots from dist/pyodide alone, in node and in a module Web Worker in Chromium, and
installs the py_worker wheel with no network. Boot times go to bench/out/pyodide_boot.json.

Plain host tests (no pytest-pyodide fixture): they drive node and Chromium themselves, so the
worker case is the one the engine really uses. Run with ``--dist-dir dist/pyodide``.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "out" / "pyodide_boot.json"

# Loads Pyodide from INDEX (absolute: a URL in a worker, a directory in node) and installs the
# wheel two ways: loadPackage through our lock, and micropip from the served URL.
BOOT_JS = """
const t0 = performance.now();
const py = await loadPyodide({ indexURL: INDEX, lockFileURL: INDEX + "pyodide-lock.json" });
const boot_s = (performance.now() - t0) / 1000;
await py.loadPackage(["py-worker"]);
const loadPackage = py.runPython("import py_worker; py_worker.__version__");
await py.loadPackage(["micropip"]);
const micropip = await py.runPythonAsync(`
import micropip, importlib.metadata
await micropip.install("${BASE}${WHEEL}", reinstall=True)
importlib.metadata.version("py_worker")
`);
const result = { boot_s, total_s: (performance.now() - t0) / 1000, loadPackage, micropip };
"""


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser closing mid-response is not an error of the site."""


@pytest.fixture(scope="module")
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    dist = Path(request.config.option.dist_dir)
    lock = json.loads((dist / "pyodide-lock.json").read_text())
    wheel = lock["packages"]["py-worker"]["file_name"]

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = _Server(("127.0.0.1", 0), functools.partial(Quiet, directory=str(dist)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", wheel
    finally:
        server.shutdown()
        server.server_close()


def record(key: str, value: dict[str, Any]) -> None:
    BENCH.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(BENCH.read_text()) if BENCH.exists() else {}
    data[key] = value
    BENCH.write_text(json.dumps(data, indent=1) + "\n")


def check(result: dict[str, Any], version: str) -> None:
    assert result["loadPackage"] == version
    assert result["micropip"] == version
    assert 0 < result["boot_s"] < result["total_s"]


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_boots_in_node(served: tuple[str, str], request: pytest.FixtureRequest) -> None:
    base, wheel = served
    dist = Path(request.config.option.dist_dir)
    script = (
        f"import {{ loadPyodide }} from {json.dumps(str(dist / 'pyodide.mjs'))};\n"
        f"const BASE = {json.dumps(base)}, WHEEL = {json.dumps(wheel)};\n"
        f"const INDEX = {json.dumps(str(dist) + '/')};\n"
        f"{BOOT_JS}\nconsole.log('RESULT ' + JSON.stringify(result));\n"
    )
    proc = subprocess.run(
        ["node", "--input-type=module", "-e", script], capture_output=True, text=True, timeout=180, cwd=dist
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    check(result, wheel.split("-")[1])
    record("node", result)


@pytest.mark.skipif(shutil.which("/usr/bin/chromium") is None, reason="needs Debian's chromium")
def test_boots_in_chromium_module_worker(served: tuple[str, str]) -> None:
    from playwright.sync_api import sync_playwright

    base, wheel = served
    worker = (
        f'import {{ loadPyodide }} from "./pyodide.mjs";\n'
        f"const BASE = {json.dumps(base)}, WHEEL = {json.dumps(wheel)}, INDEX = BASE;\n"
        f"try {{ {BOOT_JS}\n postMessage(result); }} catch (e) {{ postMessage({{ error: String(e) }}); }}\n"
    )
    page_html = (
        "<script type=module>const w = new Worker('./boot_worker.mjs', {type: 'module'});"
        "window.result = new Promise((r) => (w.onmessage = (e) => r(e.data)));</script>"
    )
    foreign: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless=new", "--no-sandbox", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        context = browser.new_context()

        def route(r: Any) -> None:
            url = r.request.url
            if url == base + "boot.html":
                r.fulfill(body=page_html, content_type="text/html")
            elif url == base + "boot_worker.mjs":
                r.fulfill(body=worker, content_type="text/javascript")
            elif url.startswith(base):
                r.continue_()
            else:
                foreign.append(url)
                r.abort()

        context.route("**/*", route)
        # Worker-initiated requests are not always routed through the page: the server check
        # below (only 127.0.0.1 is ever contacted) rests on Chromium's flags and the absolute URLs.
        page = context.new_page()
        page.goto(base + "boot.html")
        result = page.evaluate("window.result")
        browser.close()
    assert "error" not in result, result.get("error", "")
    check(result, wheel.split("-")[1])
    assert foreign == []
    record("chromium_worker", result)
