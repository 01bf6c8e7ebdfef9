"""GGUF files loaded by URL through the whole browser stack: the demo page answers
from SmolLM2's GGUF as the host reference does; a second load comes from the browser cache; a
wrong sha256 pin, a block format or an architecture the kernels do not run are refused with
their classes on the main thread, and the engine goes on serving.

The tiny GGUFs of tools/make_tiny_gguf.py (build/gguf, built on first use) are test models, not
part of site/ or its app-config.json: the counting server serves them under /test-gguf/ beside
the site, and the tests pass their records in the engine's appConfig.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import gguf
import pytest
from conftest import ROOT, SITE, Guarded, _site_ready
from hosts import CACHE_NAME, STORED, CountingServer, GuardedContext

from py_worker import MLCEngine
from py_worker.prebuilt import DEFAULT_GGUF, DEFAULT_MODEL_ID
from py_worker.reference import ReferenceKernels
from tests.threads import run_async
from tools.kernel_runners import tiny_gguf

MOUNT = "/test-gguf/"
WRONG = "0" * 64
QUESTION = "What is the capital of France?"
SMOL_TOKENS = 10  # SwiftShader decodes SmolLM2 at 1-2 tokens/s

# An engine over a fresh dedicated worker of the site, with `config` as its app config; nothing
# is loaded yet. `progress` collects [fraction, text] of the current load.
NEW_ENGINE = """(config) => {
  window.progress = [];
  window.engine = new proxy.WebWorkerMLCEngine(() => connect("worker"),
    {appConfig: config, initProgressCallback: (r) => progress.push([r.progress, r.text])});
}"""

# One reload: its progress, and its error as the main thread sees it (with every error class
# of errors.js the thrown object is an instance of).
RELOAD = """async (model) => {
  progress.length = 0;
  try {
    await within(engine.reload(model), 240000, `reload ${model}`);
    return {progress: [...progress]};
  } catch (e) {
    const classes = Object.keys(proxy.ERROR_CLASSES).filter((n) => e instanceof proxy.ERROR_CLASSES[n]);
    return {progress: [...progress], error: {name: e.name, message: e.message, fields: e.fields, classes}};
  }
}"""

ASK = """async (request) => {
  const reply = await within(engine.chat.completions.create(request), 120000, "chat");
  return {text: reply.choices[0].message.content, tokens: reply.usage.completion_tokens, model: reply.model};
}"""

TINY_REQUEST = {
    "messages": [{"role": "user", "content": "Where do the weights live?"}],
    "max_tokens": 4,
    "temperature": 0,
    "ignore_eos": True,
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class GgufSite:
    """The site plus /test-gguf/, behind a request-counting server, and a guarded context."""

    server: CountingServer
    url: str
    context: GuardedContext
    files: dict[str, Path]

    def record(self, variant: str, model_id: str | None = None, pin: str | None = None) -> dict[str, Any]:
        path = self.files[variant]
        return {
            "model_id": model_id or path.stem,
            "model": self.url + MOUNT.lstrip("/") + path.name,
            "model_type": "LLM",
            "backend": "wgsl",  # these test our GGUF kernels (on SwiftShader, auto would pick wasm)
            "sha256": {path.name: pin or sha256(path)},
        }

    def hits(self, variant: str) -> int:
        return self.server.hits[MOUNT + self.files[variant].name]

    def engine(self, records: list[dict[str, Any]]) -> Any:
        """A new page (same browser profile as the earlier ones) with an engine over ``records``."""
        page = self.context.page()
        page.evaluate(NEW_ENGINE, {"model_list": records})
        return page


@pytest.fixture
def gguf_site(browser: Any) -> Iterator[GgufSite]:
    reason = _site_ready()
    if reason:
        pytest.skip(reason)
    files = {v: ROOT / tiny_gguf(v) for v in ("mixed", "q3k", "mamba")}
    folders = {p.parent for p in files.values()}
    assert len(folders) == 1, folders
    counting = CountingServer()
    with counting.serving(mounts={MOUNT: folders.pop()}) as url:
        context = GuardedContext(browser, url)
        try:
            yield GgufSite(counting, url, context, files)
        finally:
            context.close()


def assert_web_llm_progress(progress: list[list[Any]], *, from_cache: bool) -> None:
    """web-llm's texts, fractions that never go back and end at 1.0."""
    fractions = [f for f, _ in progress]
    texts = [t for _, t in progress]
    assert fractions == sorted(fractions), progress
    assert fractions[-1] == 1.0, progress
    assert texts[0] == "Start to fetch params", texts
    fetched = [t for t in texts if t.startswith("Fetching param cache[1/1]: ")]
    cached = [t for t in texts if t.startswith("Loading model from cache[1/1]: ")]
    assert (bool(cached), bool(fetched)) == (from_cache, not from_cache), texts
    assert texts[-1].startswith("Finish loading on WebGPU - "), texts


def test_second_page_loads_the_gguf_from_the_cache(gguf_site: GgufSite) -> None:
    record = gguf_site.record("mixed")
    first_page = gguf_site.engine([record])
    first = first_page.evaluate(RELOAD, record["model_id"])
    assert "error" not in first, first
    assert gguf_site.hits("mixed") == 1
    assert_web_llm_progress(first["progress"], from_cache=False)
    answer = first_page.evaluate(ASK, TINY_REQUEST)
    assert answer["tokens"] == 4
    assert answer["model"] == record["model_id"]
    first_page.close()

    second_page = gguf_site.engine([record])  # a new page and worker, the same profile
    second = second_page.evaluate(RELOAD, record["model_id"])
    assert "error" not in second, second
    assert gguf_site.hits("mixed") == 1, "the second load must not ask the server for the GGUF"
    assert_web_llm_progress(second["progress"], from_cache=True)
    assert second_page.evaluate(ASK, TINY_REQUEST) == answer  # the cached bytes are the same model
    # A GGUF is one file: nothing beside it was asked for (no mlc-chat-config.json under it).
    gguf = MOUNT + gguf_site.files["mixed"].name
    assert [p for p in gguf_site.server.hits if p.startswith(gguf)] == [gguf], gguf_site.server.hits


def test_wrong_pin_refused_as_integrity_error_and_not_cached(gguf_site: GgufSite) -> None:
    good = gguf_site.record("mixed")
    name = gguf_site.files["mixed"].name
    bad = gguf_site.record("mixed", model_id="tiny-llama-mixed-wrong-pin", pin=WRONG)
    page = gguf_site.engine([bad, good])
    refused = page.evaluate(RELOAD, bad["model_id"])
    error = refused["error"]
    assert error["name"] == "IntegrityError", refused
    assert {"IntegrityError", "ModelLoadError", "PyWorkerError"} <= set(error["classes"]), error
    assert name in error["message"]
    assert error["fields"]["file"] == name
    assert error["fields"]["actual"] == good["sha256"][name]
    assert error["fields"]["expected"] == [WRONG]
    assert gguf_site.hits("mixed") == 1
    stored = page.evaluate(STORED, CACHE_NAME)
    assert not [u for u in stored["cached"] + stored["idb"] if u.endswith("/" + name)], stored

    loaded = page.evaluate(RELOAD, good["model_id"])  # the right pin: fetched again, not from a cache
    assert "error" not in loaded, loaded
    assert gguf_site.hits("mixed") == 2, "the refused GGUF must not have been cached"
    assert_web_llm_progress(loaded["progress"], from_cache=False)


def test_unsupported_format_and_architecture_refused_as_classes_then_engine_serves(
    gguf_site: GgufSite,
) -> None:
    reader = gguf.GGUFReader(gguf_site.files["q3k"])
    [q3k_tensor] = [t.name for t in reader.tensors if t.tensor_type == gguf.GGMLQuantizationType.Q3_K]
    q3k, mamba, mixed = (gguf_site.record(v) for v in ("q3k", "mamba", "mixed"))
    mamba_wasm = {**gguf_site.record("mamba", model_id="tiny-mamba-wasm"), "backend": "wasm"}
    page = gguf_site.engine([q3k, mamba, mamba_wasm, mixed])

    fmt = page.evaluate(RELOAD, q3k["model_id"])["error"]
    assert fmt["name"] == "UnsupportedWeightFormatError", fmt
    assert {"UnsupportedWeightFormatError", "ModelLoadError"} <= set(fmt["classes"]), fmt
    assert fmt["fields"]["type_name"] == "Q3_K", fmt
    assert fmt["fields"]["tensor"] == q3k_tensor, fmt
    assert fmt["fields"]["ggml_type"] == int(gguf.GGMLQuantizationType.Q3_K)

    arch = page.evaluate(RELOAD, mamba["model_id"])["error"]
    assert arch["name"] == "UnsupportedArchitectureError", arch
    assert {"UnsupportedArchitectureError", "ModelLoadError"} <= set(arch["classes"]), arch
    assert arch["fields"]["architecture"] == "mamba", arch
    assert "llama" in arch["fields"]["supported"], arch
    assert "mamba" in arch["message"]

    # llama.cpp refuses this tiny mamba too (it lacks mamba's tensors): its own reason is named.
    native = page.evaluate(RELOAD, mamba_wasm["model_id"])["error"]
    assert native["name"] == "ModelLoadError", native
    assert native["message"].startswith("loading the GGUF failed in llama.cpp: "), native
    assert "error loading model" in native["message"], native
    assert native["fields"] == {"backend": "wasm"}, native

    served = page.evaluate(RELOAD, mixed["model_id"])
    assert "error" not in served, served
    answer = page.evaluate(ASK, TINY_REQUEST)
    assert answer["tokens"] == 4
    assert answer["model"] == mixed["model_id"]


# ---- SmolLM2's GGUF on the demo page (slow) ----------------------------------------------------


def site_record(model_id: str) -> dict[str, Any]:
    """The record site/app-config.json serves for ``model_id``."""
    records = json.loads((SITE / "app-config.json").read_text())["model_list"]
    [record] = [r for r in records if r["model_id"] == model_id]
    return dict(record)


def reference_answer(record: dict[str, Any], request: dict[str, Any]) -> str:
    """The same record (the same GGUF, pin and overrides) and request on host CPython, NumPy
    (in a thread of its own: playwright's sync API holds this thread's event loop)."""

    async def run() -> str:
        local = {**record, "model": str(SITE / record["model"])}
        engine = MLCEngine(ReferenceKernels(), {"model_list": [local]})
        await engine.reload(record["model_id"])
        reply = await engine.chat.completions.create(**request)
        await engine.unload()
        assert isinstance(reply, dict)
        return str(reply["choices"][0]["message"]["content"])

    return run_async(run())


@pytest.mark.slow
@pytest.mark.skipif(not (SITE / "models" / DEFAULT_GGUF).exists(), reason=f"site/ has no {DEFAULT_GGUF}")
def test_demo_page_answers_from_the_smollm2_gguf_like_the_host_reference(guarded: Guarded) -> None:
    page = guarded.page
    hits = {"gguf": 0}

    def count(route: Any) -> None:
        hits["gguf"] += 1
        route.continue_()

    page.route(f"**/models/{DEFAULT_GGUF}", count)  # later routes win over the guard's (local only)
    query = f"model={DEFAULT_MODEL_ID}&prompt={quote(QUESTION)}&max_tokens={SMOL_TOKENS}&temperature=0"
    query += "&backend=wgsl"  # our GGUF kernels (on SwiftShader a GGUF would go to llama.cpp)
    guarded.open(f"index.html?{query}")
    page.wait_for_function("window.demoState.done", timeout=900_000, polling=1000)
    state = page.evaluate("window.demoState")
    assert state["error"] is None, state["error"]
    assert state["loaded"] == [DEFAULT_MODEL_ID], state["error"]
    record = site_record(DEFAULT_MODEL_ID)
    assert record["model"] == f"models/{DEFAULT_GGUF}"
    assert DEFAULT_GGUF in record["sha256"]
    assert hits["gguf"] == 1
    assert_web_llm_progress(state["progress"], from_cache=False)
    print(f"demo answer: {state['text']!r}")
    assert "Paris" in state["text"], state["text"]
    request = {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": SMOL_TOKENS}
    request["temperature"] = 0
    assert state["text"] == reference_answer(record, request)

    # The model reloaded in the same profile comes from the cache and answers the same.
    again = guarded.js(
        """async ([model, request]) => {
          demoState.progress = [];
          await within(demoEngine.reload(model), 600000, "reload");
          const reply = await within(demoEngine.chat.completions.create(request), 600000, "chat");
          return {progress: demoState.progress, text: reply.choices[0].message.content};
        }""",
        [DEFAULT_MODEL_ID, request],
    )
    assert hits["gguf"] == 1, "the reload must not ask the server for the GGUF"
    assert_web_llm_progress(again["progress"], from_cache=True)
    assert again["text"] == state["text"]
