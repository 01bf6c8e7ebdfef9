"""A remote model in Python inside Pyodide (node and Chromium): ``MLCEngine`` over ``JsKernels``
whose shim is the site's own js_glue/kernels/remote.js (fetch, SSE, AbortController) beside the
fake local backend of fake_shim.js, against a real OpenAI-compatible server on 127.0.0.1
(llama-cpp-python's, serving the SmolLM2 GGUF: tests/llama_server.py)."""

from __future__ import annotations

import base64
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_pyodide import run_in_pyodide

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests import llama_server as ls  # noqa: E402

FAKE_SHIM = (Path(__file__).parent / "fake_shim.js").read_text()


def data_url(text: str) -> str:
    return "data:text/javascript;base64," + base64.b64encode(text.encode()).decode()


def remote_module() -> str:
    """remote.js as one importable URL (its one import, errors.js, inlined as a URL too)."""
    kernels = ROOT / "js_glue" / "kernels"
    errors = data_url((kernels / "errors.js").read_text())
    return data_url((kernels / "remote.js").read_text().replace('"./errors.js"', f'"{errors}"'))


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ls.LlamaServer]:
    with ls.started(tmp_path_factory.mktemp("llama")) as server:
        yield server


@run_in_pyodide(packages=["py-worker"])
async def _scenarios(selenium: Any, fake_js: str, module_url: str, config: dict[str, Any]) -> dict[str, Any]:
    import asyncio

    from pyodide.code import run_js

    from py_worker.engine import MLCEngine
    from py_worker.errors import PyWorkerError
    from py_worker.jsbridge import JsKernels

    shim = run_js(fake_js)
    remote = (await run_js("(url) => import(url)")(module_url)).createRemote()
    for name in ("remoteOpen", "remoteNext", "remoteResult", "remoteAbort"):
        setattr(shim, name, getattr(remote, name))
    engine = MLCEngine(JsKernels(shim), config["app_config"])
    user, greedy, long = config["user"], config["greedy"], config["long"]
    out: dict[str, Any] = {}

    async def error_of(call: Any) -> dict[str, Any] | None:
        try:
            result = await call
            if hasattr(result, "__anext__"):
                async for _ in result:
                    pass
        except PyWorkerError as exc:
            return exc.to_dict()
        return None

    await engine.reload(["fake", "remote"])
    out["loaded"] = engine.loaded_model_ids()
    chat = engine.chat.completions
    out["whole"] = await chat.create(model="remote", messages=user, max_tokens=16, **greedy)
    stream = await chat.create(model="remote", messages=user, max_tokens=16, stream=True, **greedy)
    out["chunks"] = [c async for c in stream]
    out["completion"] = await engine.completions.create(
        model="remote", prompt="The capital of France is", max_tokens=6, **greedy
    )

    # An interrupt mid-stream, then a stream closed early: both abort their HTTP request.
    stream = await chat.create(model="remote", messages=user, stream=True, **long)
    seen = []
    async for chunk in stream:
        seen.append(chunk)
        if len(seen) == 3:
            engine.interrupt_generate()
    out["interrupted"] = seen[-1]["choices"][0]["finish_reason"]
    stream = await chat.create(model="remote", messages=user, stream=True, **long)
    async with stream:
        await stream.__anext__()

    # A request may not say where it goes.
    out["routed"] = await error_of(
        chat.create(model="remote", messages=user, base_url="http://127.0.0.1:9/v1", headers={"a": "b"})
    )

    # A local stream and a remote one at the same time.
    async def read(model: str, **request: Any) -> list[dict[str, Any]]:
        made = await engine.completions.create(model=model, prompt="abc", stream=True, **request)
        return [c async for c in made]

    out["local"], out["far"] = await asyncio.gather(
        read("fake", max_tokens=20, temperature=0), read("remote", max_tokens=8, **greedy)
    )

    await engine.reload(["down", "silent"])
    out["down"] = await error_of(chat.create(model="down", messages=user, max_tokens=2))
    out["silent"] = await error_of(chat.create(model="silent", messages=user, max_tokens=2, stream=True))
    return out


def test_remote_model_in_pyodide(selenium: Any, llama: ls.LlamaServer) -> None:
    before = llama.disconnects()
    with ls.silent_server() as silent:
        app_config = {
            "model_list": [
                {"model_id": "fake", "model": "/m"},
                ls.record("remote", llama.url),
                ls.record("down", ls.down_url()),
                ls.record("silent", silent, timeout_ms=1500),
            ]
        }
        config = {"app_config": app_config, "user": ls.USER, "greedy": ls.GREEDY, "long": ls.LONG}
        got = _scenarios(selenium, FAKE_SHIM, remote_module(), config)
    assert got["loaded"] == ["fake", "remote"]
    whole = got["whole"]
    assert whole["model"] == "remote"
    assert whole["object"] == "chat.completion"
    assert whole["usage"]["completion_tokens"] > 0
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in got["chunks"] if c["choices"])
    assert streamed == whole["choices"][0]["message"]["content"]  # temperature 0, one seed
    assert {c["model"] for c in got["chunks"]} == {"remote"}
    assert got["completion"]["object"] == "text_completion"
    assert got["interrupted"] == "abort"
    assert llama.disconnects() - before == 2  # the server stopped both streams
    assert got["routed"]["name"] == "UnsupportedFieldsError"
    assert {c["model"] for c in got["local"]} == {"fake"}
    assert got["local"][-1]["choices"][0]["finish_reason"] == "length"
    assert got["far"][-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert got["down"]["name"] == "RemoteConnectionError"
    assert got["silent"]["name"] == "RemoteTimeoutError"
    assert ls.SECRET not in str(got)
