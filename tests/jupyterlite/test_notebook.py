"""The JupyterLite site, built offline, runs py_worker's example notebook in headless Chromium.

The site (tools/jupyterlite_site.py) is built fresh into site/lite and served with the main site
from 127.0.0.1; every request to another host is aborted and recorded, and must not happen.
Every code cell runs through the JupyterLab app itself (``exposeAppInBrowser``), one at a time,
on the tiny models the notebook defaults to; the streamed answer and the embeddings are checked
against the same engine on host CPython with the NumPy reference kernels, for the same request.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.threads import run_async

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "site"
CHROMIUM = "/usr/bin/chromium"
NOTEBOOK = "py_worker_demo.ipynb"

pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs Debian's chromium")

# Runs one cell and keeps every state its outputs went through while it ran (the load progress
# line is one display, updated in place) and the stream messages the kernel sent for it one by one
# (JupyterLab appends stream text to an output without a list change).
RUN_CELL = """async (index) => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  await panel.sessionContext.ready;
  panel.content.activeCellIndex = index;
  const cell = panel.content.widgets[index];
  const kernel = panel.sessionContext.session.kernel;
  const states = [];
  const streamed = [];
  const record = () => states.push(cell.model.outputs.toJSON());
  const listen = (_, msg) => {
    if (msg.header.msg_type === "stream") streamed.push(msg.content.text);
  };
  cell.model.outputs.changed.connect(record);
  kernel.iopubMessage.connect(listen);
  try {
    await app.commands.execute("notebook:run-cell");
  } finally {
    cell.model.outputs.changed.disconnect(record);
    kernel.iopubMessage.disconnect(listen);
  }
  return {outputs: cell.model.outputs.toJSON(), states, streamed};
}"""

# The notebook's one switch to the real models, flipped in the open notebook before it runs.
SWITCH = ("SMOLLM2 = False", "SMOLLM2 = True")
FLIP_SWITCH = """async ([index, old, new_]) => {
  const panel = window.jupyterapp.shell.currentWidget;
  await panel.context.ready;
  const cell = panel.content.model.cells.get(index).sharedModel;
  const source = cell.getSource();
  if (!source.includes(old)) throw new Error("the first cell has no " + old);
  cell.setSource(source.replace(old, new_));
}"""
VARIANTS = {
    "tiny": ["tiny-llama-q0f32", "tiny-bert-q0f32"],
    "smollm2": ["SmolLM2-135M-Instruct-q4f32_1", "all-MiniLM-L6-v2-q0f32"],
}

# Evaluates an expression in the notebook's kernel (as a silent execute request) and returns
# what it prints: the test reads the notebook's own request back instead of repeating it.
KERNEL_PRINT = """async (code) => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const future = kernel.requestExecute({code, silent: false, store_history: false});
  let text = "";
  future.onIOPub = (msg) => {
    if (msg.header.msg_type === "stream") text += msg.content.text;
    if (msg.header.msg_type === "error") text += msg.content.ename + ": " + msg.content.evalue;
  };
  await future.done;
  return text;
}"""


@pytest.fixture(scope="module")
def site() -> dict[str, float]:
    from tools.jupyterlite_site import build_site

    ensure_site_models()
    return build_site(SITE / "lite")


def ensure_site_models() -> None:
    """The notebook's tiny models must be in the main site; build the tiny BERT and re-sync the
    site when the build step has not (site.py only copies what changed)."""
    from tools.make_tiny_bert import ensure_tiny_bert

    if not (SITE / "models" / "tiny-bert-q0f32" / "tensor-cache.json").exists():
        ensure_tiny_bert()
        cmd = [sys.executable, "tools/site.py", "--out", "site", "--pyodide", "dist/pyodide"]
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


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
            plain = out["data"].get("text/plain", "")
            parts.append("".join(plain) if isinstance(plain, list) else str(plain))
    return "".join(parts)


class Notebook:
    """The open notebook page: runs cells in order, keeps their outputs and timings."""

    def __init__(self, variant: str, page: Any, foreign: list[str], console: list[str]) -> None:
        self.variant, self.page, self.foreign, self.console = variant, page, foreign, console
        self.cells = json.loads((ROOT / "static" / "notebooks" / NOTEBOOK).read_text())["cells"]
        self.outputs: dict[str, str] = {}
        self.states: dict[str, list[str]] = {}
        self.streamed: dict[str, list[str]] = {}
        self.seconds: dict[str, float] = {}
        self._reference: tuple[str, dict[str, Any]] | None = None

    def switch_to_smollm2(self) -> None:
        first = next(i for i, c in enumerate(self.cells) if c["cell_type"] == "code")
        self.page.evaluate(FLIP_SWITCH, [first, *SWITCH])

    def run_all(self) -> None:
        for index, cell in enumerate(self.cells):
            if cell["cell_type"] != "code":
                continue
            started = time.monotonic()
            result = self.page.evaluate(RUN_CELL, index)
            self.seconds[cell["id"]] = round(time.monotonic() - started, 3)
            self.outputs[cell["id"]] = text_of(result["outputs"])
            self.states[cell["id"]] = [text_of(s) for s in result["states"]]
            self.streamed[cell["id"]] = result["streamed"]

    def reference(self) -> tuple[str, dict[str, Any]]:
        """What the engine answers on host CPython for the notebook's own request (read back
        from the kernel), on the NumPy reference kernels; computed once."""
        if self._reference is None:
            models = self.kernel_json("[CHAT_MODEL, EMBED_MODEL]")
            assert models == VARIANTS[self.variant], models
            request, texts = self.kernel_json("request"), self.kernel_json("texts")
            self._reference = run_async(reference_run(request, texts, models))
        return self._reference

    def kernel_json(self, expression: str) -> Any:
        printed = self.page.evaluate(KERNEL_PRINT, f"import json; print(json.dumps({expression}))")
        return json.loads(printed)


SLOW = pytest.mark.skipif(not os.environ.get("PY_WORKER_SLOW"), reason="SmolLM2 runs with PY_WORKER_SLOW=1")


@pytest.fixture(scope="module", params=["tiny", pytest.param("smollm2", marks=[pytest.mark.slow, SLOW])])
def notebook(request: pytest.FixtureRequest, site: dict[str, float]) -> Iterator[Notebook]:
    from playwright.sync_api import sync_playwright

    variant: str = request.param
    missing = [m for m in VARIANTS[variant] if not (SITE / "models" / m / "tensor-cache.json").exists()]
    assert not missing, f"site/models lacks {missing}: run ./build.sh"

    foreign: list[str] = []
    console: list[str] = []
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
        page.on("console", lambda m: console.append(m.text))
        page.set_default_timeout(120_000)
        started = time.monotonic()
        page.goto(f"{base}/lite/notebooks/index.html?path={NOTEBOOK}")
        page.wait_for_function(
            "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
            " && window.jupyterapp.shell.currentWidget.sessionContext"
        )
        nb = Notebook(variant, page, foreign, console)
        nb.seconds["open"] = round(time.monotonic() - started, 3)
        if variant == "smollm2":
            nb.switch_to_smollm2()
        nb.run_all()
        yield nb
        browser.close()
        bench = ROOT / "bench" / "out" / f"jupyterlite-{variant}.json"
        bench.parent.mkdir(parents=True, exist_ok=True)
        bench.write_text(json.dumps({"site_build_s": site, "cell_s": nb.seconds}, indent=1) + "\n")


async def reference_run(request: dict[str, Any], texts: list[str], models: list[str]) -> tuple[str, Any]:
    """The notebook's chat request and embeddings on host CPython with the NumPy reference."""
    from py_worker import MLCEngine
    from py_worker.reference import ReferenceKernels

    config = {"model_list": [{"model_id": m, "model": str(SITE / "models" / m)} for m in models]}
    config["model_list"][1]["model_type"] = "embedding"
    engine = MLCEngine(ReferenceKernels(), config)
    await engine.reload(models)
    answer = await engine.chat.completions.create(**request)
    assert isinstance(answer, dict)
    embeddings = await engine.embeddings.create(model=models[1], input=texts)
    await engine.unload()
    return answer["choices"][0]["message"]["content"], embeddings


def test_site_is_offline_and_uses_local_pyodide(site: dict[str, float]) -> None:
    config = json.loads((SITE / "lite" / "jupyter-lite.json").read_text())["jupyter-config-data"]
    kernel = config["litePluginSettings"]["@jupyterlite/pyodide-kernel-extension:kernel"]
    assert kernel["pyodideUrl"] == "./static/pyodide/pyodide.mjs"
    assert kernel["disablePyPIFallback"] is True
    assert (SITE / "lite" / "pypi" / "all.json").exists()
    assert any(p.name.startswith("py_worker-") for p in (SITE / "lite" / "pypi").glob("*.whl"))
    assert (SITE / "lite" / "files" / NOTEBOOK).exists()


def test_every_cell_runs_without_error(notebook: Notebook) -> None:
    ran = [c["id"] for c in notebook.cells if c["cell_type"] == "code"]
    assert list(notebook.outputs) == ran
    for cell_id, text in notebook.outputs.items():
        assert "Error" not in text, (cell_id, text, notebook.console[-20:])
        assert "Traceback" not in text, (cell_id, text, notebook.console[-20:])
    assert notebook.outputs["version"].strip() == "py_worker 0.1.0 on emscripten"
    assert notebook.foreign == []


def test_load_shows_progress_in_place(notebook: Notebook) -> None:
    final = notebook.outputs["load"]
    assert "100%" in final, final
    assert "Finish loading on WebGPU" in final, final
    # One output, updated in place: never more than one progress line at a time.
    bars = [re.findall(r"\[[# ]{20}\] +(\d+)%", state) for state in notebook.states["load"]]
    assert all(len(b) <= 1 for b in bars), notebook.states["load"]
    percents = [int(b[0]) for b in bars if b]
    assert len(set(percents)) >= 3, percents
    assert percents[-1] == 100, percents


def test_answer_streams_and_matches_the_engine(notebook: Notebook) -> None:
    want_text, _ = notebook.reference()
    printed = notebook.outputs["chat"]
    answer, _, tail = printed.rpartition("\n[finish_reason: ")
    assert answer == want_text, (answer, want_text)
    assert answer.strip(), (answer, want_text)
    assert tail.rstrip() in ("stop]", "length]"), tail
    if notebook.variant == "smollm2":
        assert "Paris" in answer, answer
    # The answer reached the cell piece by piece, as the engine produced it.
    pieces = notebook.streamed["chat"]
    assert "".join(pieces) == printed
    before_finish = pieces[: next(i for i, p in enumerate(pieces) if "[finish_reason" in p)]
    assert len([p for p in before_finish if p]) >= 3, pieces


def test_embeddings_and_cosine_match_the_engine(notebook: Notebook) -> None:
    _, want = notebook.reference()
    line = notebook.outputs["embed"]
    match = re.fullmatch(r"(\d+)-d embeddings, cosine similarity (-?\d\.\d{4})\n", line)
    assert match, line
    a, b = (d["embedding"] for d in want["data"])
    want_cosine = sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b)
    )
    assert int(match[1]) == len(a) == {"tiny": 32, "smollm2": 384}[notebook.variant]
    assert -1.0 <= float(match[2]) <= 1.0
    assert float(match[2]) == pytest.approx(want_cosine, abs=2e-4)
    if notebook.variant == "smollm2":  # two sentences about a sitting cat are close
        assert float(match[2]) > 0.5


WASM_IN_THE_KERNEL = """
import json
_gguf = await py_worker.CreateMLCEngine("tiny-llama-mixed")
_ask = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "ignore_eos": True}
_reply = await _gguf.chat.completions.create(**_ask)
print(json.dumps({"tokens": _reply["usage"]["completion_tokens"], "stats": await _gguf.runtime_stats_text()}))
await _gguf.unload()
"""


def test_a_gguf_runs_on_llama_cpp_inside_the_kernel(notebook: Notebook) -> None:
    """The kernel's engine on a software adapter sends a GGUF to the wasm backend, whose
    llama.cpp worker starts inside the kernel's own worker."""
    if notebook.variant != "tiny":
        pytest.skip("one variant is enough: the tiny GGUF")
    printed = notebook.page.evaluate(KERNEL_PRINT, WASM_IN_THE_KERNEL)
    out = json.loads(printed.strip().splitlines()[-1])
    assert out["tokens"] == 4, printed
    why = "the WebGPU adapter is a fallback one (google swiftshader)"
    assert out["stats"].endswith(f"backend: wasm ({why})"), out
