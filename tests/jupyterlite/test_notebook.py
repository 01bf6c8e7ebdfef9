"""The JupyterLite site, built offline, runs py_worker's example notebook in headless Chromium.

The site (tools/jupyterlite_site.py) is built fresh into site/lite and served with the main site
from 127.0.0.1; every request to another host is aborted and recorded, and must not happen.
Cells run through the JupyterLab app itself (``exposeAppInBrowser``), one at a time.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "site"
CHROMIUM = "/usr/bin/chromium"
NOTEBOOK = "py_worker_demo.ipynb"

pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs Debian's chromium")

RUN_CELL = """async (index) => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  await panel.sessionContext.ready;
  panel.content.activeCellIndex = index;
  await app.commands.execute("notebook:run-cell");
  const cell = panel.content.widgets[index];
  return {source: cell.model.sharedModel.getSource(), outputs: cell.model.outputs.toJSON()};
}"""


@pytest.fixture(scope="module")
def site() -> dict[str, float]:
    sys.path.insert(0, str(ROOT / "tools"))
    from jupyterlite_site import build_site

    return build_site(SITE / "lite")


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser closing mid-response is not an error of the site."""


@contextlib.contextmanager
def serve(root: Path) -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = _Server(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def text_of(outputs: list[dict[str, Any]]) -> str:
    parts = []
    for out in outputs:
        if out.get("output_type") == "stream":
            parts.append("".join(out["text"]) if isinstance(out["text"], list) else out["text"])
        elif out.get("output_type") == "error":
            parts.append(f"{out['ename']}: {out['evalue']}")
        elif "data" in out:
            parts.append(str(out["data"].get("text/plain", "")))
    return "".join(parts)


@pytest.fixture(scope="module")
def notebook(site: dict[str, float]) -> Iterator[tuple[Any, list[str], dict[str, Any]]]:
    from playwright.sync_api import sync_playwright

    foreign: list[str] = []
    cells = json.loads((ROOT / "static" / "notebooks" / NOTEBOOK).read_text())["cells"]
    with serve(SITE) as base, sync_playwright() as pw:
        # launch() gives each run a fresh temporary profile.
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless=new", "--no-sandbox", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--enable-unsafe-webgpu",
            ],
        )  # fmt: skip
        context = browser.new_context()

        def guard(route: Any) -> None:
            if route.request.url.startswith(base + "/") or route.request.url.startswith(("data:", "blob:")):
                route.continue_()
            else:
                foreign.append(route.request.url)
                route.abort()

        context.route("**/*", guard)
        page = context.new_page()
        started = time.monotonic()
        page.goto(f"{base}/lite/notebooks/index.html?path={NOTEBOOK}")
        page.wait_for_function(
            "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
            " && window.jupyterapp.shell.currentWidget.sessionContext",
            timeout=120_000,
        )
        timings = {"open_s": time.monotonic() - started, **site}
        yield page, foreign, {"cells": cells, "timings": timings}
        browser.close()


def run_cell(page: Any, index: int, timeout_s: float = 300) -> str:
    page.set_default_timeout(timeout_s * 1000)
    result = page.evaluate(RUN_CELL, index)
    return text_of(result["outputs"])


def test_site_is_offline_and_uses_local_pyodide(site: dict[str, float]) -> None:
    config = json.loads((SITE / "lite" / "jupyter-lite.json").read_text())["jupyter-config-data"]
    kernel = config["litePluginSettings"]["@jupyterlite/pyodide-kernel-extension:kernel"]
    assert kernel["pyodideUrl"] == "./static/pyodide/pyodide.mjs"
    assert kernel["disablePyPIFallback"] is True
    assert (SITE / "lite" / "pypi" / "all.json").exists()
    assert any(p.name.startswith("py_worker-") for p in (SITE / "lite" / "pypi").glob("*.whl"))
    assert (SITE / "lite" / "files" / NOTEBOOK).exists()


def test_notebook_installs_and_runs_py_worker(notebook: tuple[Any, list[str], dict[str, Any]]) -> None:
    page, foreign, info = notebook
    cells = info["cells"]
    setup = [i for i, c in enumerate(cells) if "setup" in c["metadata"].get("tags", [])]
    assert len(setup) == 2
    started = time.monotonic()
    install = run_cell(page, setup[0])
    first_cell_s = time.monotonic() - started
    assert "Error" not in install, install
    version = run_cell(page, setup[1])
    assert version.strip() == "py_worker 0.1.0 on emscripten", version
    assert foreign == []
    bench = ROOT / "bench" / "out" / "jupyterlite.json"
    bench.parent.mkdir(parents=True, exist_ok=True)
    bench.write_text(json.dumps({**info["timings"], "first_cell_s": first_cell_s}, indent=1) + "\n")
