"""The whole user path on real MLC model libraries (../shared/mlc-libs/): in Deno on lavapipe,
the site's main-thread proxy (CreateWebWorkerMLCEngine of site/proxy.js) starts the site's
module worker (site/worker.js), which boots Pyodide and py_worker and runs Qwen2-0.5B q4f32_1
(web-llm's v0_2_48 library, tvmjs 0.18.0-dev2) and snowflake-arctic-embed-s (tvmjs 0.24.0-dev1)
on the `mlc` backend, with random weights written from each library's parameter list. The
worker is site/worker.js imported by tests/kernels/deno_engine_worker.js, which first wraps the
WebGPU prototypes to count the buffers left alive after each unload.

The site is read from file: URLs (Pyodide takes its Node path under Deno, which reads its files
by path); the model dirs and libraries are served by a 127.0.0.1 server, the only host Deno
may reach. Skipped where ../shared/mlc-libs, Deno or the built site is absent.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest

from py_worker.conversation import Conversation
from tests.kernels import test_mlc_libs as libs
from tests.kernels.test_tiny_model import Ref
from tools import serve
from tools.kernel_runners import DENO, ROOT

SITE = ROOT / "site"
QWEN2_ID, SNOWFLAKE_ID = "qwen2-mlclib", "snowflake-mlclib"
# A short prompt (the chat template makes it 32 tokens): lavapipe prefills this library at
# about 4 tokens a second.
MESSAGES = [{"role": "system", "content": "x"}, {"role": "user", "content": "hi"}]
LETTERS = list(range(ord("a"), ord("z") + 1))
"""Byte tokens of the random models' byte-level tokenizer (id b = byte b). Random weights pick
ids beyond the bytes, which decode to no text; a +100 bias on the letters makes the greedy
pick the best letter by the model's own logits, so the streamed text shows every token."""
BIAS = {str(t): 100 for t in LETTERS}
MAX_TOKENS = 4
EMBED_INPUT = ["hello world", "ok"]


def chat_request(max_tokens: int, **extra: Any) -> dict[str, Any]:
    return {"messages": MESSAGES, "model": QWEN2_ID, "temperature": 0, "max_tokens": max_tokens,
            "ignore_eos": True, "logit_bias": BIAS, "stream_options": {"include_usage": True},
            **extra}  # fmt: skip


@contextlib.contextmanager
def serving(mounts: dict[str, Path]) -> Iterator[str]:
    """Each folder of ``mounts`` (flat: model dirs, the libraries) under its URL prefix, on 127.0.0.1."""

    class Handler(serve.SiteHandler):
        def translate_path(self, path: str) -> str:
            clean = unquote(urlsplit(path).path)
            for prefix, folder in mounts.items():
                name = clean[len(prefix) :]
                if clean.startswith(prefix) and name and "/" not in name and name not in (".", ".."):
                    return str(folder / name)
            return str(SITE / "missing")

    with serve.serving(SITE, handler_class=Handler) as url:
        yield url


def run_engine(scenario: dict[str, Any], port: int) -> dict[str, Any]:
    """tests/kernels/deno_engine.js on `scenario`; the network is 127.0.0.1:`port` alone."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(scenario, f)
    env = {**os.environ, "DENO_NO_UPDATE_CHECK": "1",
           "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", tempfile.gettempdir())}  # fmt: skip
    try:
        proc = subprocess.run(
            [str(DENO), "run", "--no-lock", "--allow-read", "--allow-env", f"--allow-net=127.0.0.1:{port}",
             str(ROOT / "tests/kernels/deno_engine.js"), f.name],
            capture_output=True, text=True, timeout=600, env=env, cwd=ROOT,
        )  # fmt: skip
    finally:
        os.unlink(f.name)
    if proc.returncode != 0:
        raise RuntimeError(f"deno failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def greedy_letters(model: str, n: int) -> tuple[int, str]:
    """The NumPy reference on the same weights: the chat template's prompt ids, then n greedy
    steps over the biased letters. Returns (prompt tokens, text)."""
    config = json.loads((ROOT / model / "mlc-chat-config.json").read_text())
    ref = Ref(model)
    pieces = Conversation.from_template(config["conv_template"]).prompt_pieces(MESSAGES)
    ids = ref("tokenize", "".join(pieces))
    ref("prefill", ids)
    out: list[int] = []
    for _ in range(n):
        logits = np.asarray(ref("logits"))
        out.append(LETTERS[int(np.argmax(logits[LETTERS]))])
        ref("decode", out[-1])
    return len(ids), bytes(out).decode()


def streamed(chunks: list[dict[str, Any]]) -> tuple[str, dict[str, Any], set[str]]:
    """The stream's text, its usage chunk and the model ids its chunks name."""
    text = "".join((c.get("delta") or {}).get("content") or "" for chunk in chunks for c in chunk["choices"])
    usage = [chunk["usage"] for chunk in chunks if chunk.get("usage")]
    assert len(usage) == 1, chunks
    return text, usage[0], {chunk["model"] for chunk in chunks}


def test_proxy_worker_python_mlc_on_the_real_libraries() -> None:
    libs.need_libs()
    if not DENO.exists():
        pytest.skip("npm @deno/linux-x64-glibc is not installed")
    if not (SITE / "worker.js").exists() or not (SITE / "pyodide/pyodide.mjs").exists():
        pytest.skip(f"{SITE} is not built (./build.sh)")
    qwen2 = libs.qwen2_model()
    meta = json.loads((libs.LIBS / "meta" / f"{libs.SNOWFLAKE}.json").read_text())
    snowflake, snowflake_config = libs.snowflake_model(meta)
    prompt_tokens, want = greedy_letters(qwen2, MAX_TOKENS)

    mounts = {"/qwen2/": ROOT / qwen2, "/snowflake/": ROOT / snowflake, "/libs/": libs.LIBS}
    with serving(mounts) as base:
        records = [
            {"model_id": QWEN2_ID, "model": base + "qwen2/",
             "model_lib": f"{base}libs/{libs.QWEN2}-webgpu.wasm"},
            {"model_id": SNOWFLAKE_ID, "model": base + "snowflake/",
             "model_lib": f"{base}libs/{libs.SNOWFLAKE}-webgpu.wasm", "model_type": "embedding"},
        ]  # fmt: skip
        steps = [
            ["chat", "chat", chat_request(MAX_TOKENS)],
            ["embed", "embed", {"input": EMBED_INPUT, "model": SNOWFLAKE_ID}],
            ["unknown_model", "chat", chat_request(1, model="no-such-model")],
            ["embed_on_llm", "embed", {"input": "x", "model": QWEN2_ID}],
            ["loaded_buffers", "gpuBuffers"],
            ["unload", "unload"],
            ["unloaded_buffers", "gpuBuffers"],
            ["after_unload", "chat", chat_request(1)],
            ["reload", "reload", QWEN2_ID],
            ["chat_again", "chat", chat_request(2)],
            ["switch", "reload", SNOWFLAKE_ID],  # unloads Qwen2
            ["switched_buffers", "gpuBuffers"],
            ["unload_again", "unload"],
            ["unloaded_again_buffers", "gpuBuffers"],
            ["foreign", "fetch", "http://192.0.2.1/"],  # not loopback: Deno refuses it
        ]
        scenario = {"base": SITE.as_uri() + "/", "modelId": [QWEN2_ID, SNOWFLAKE_ID], "steps": steps,
                    "appConfig": {"model_list": [{**r, "cache": "none"} for r in records]}}  # fmt: skip
        out = run_engine(scenario, int(urlsplit(base).port or 0))
    got = out["results"]
    timing = ", ".join(f"{k} {v['seconds']:.1f}s" for k, v in got.items())
    print(f"create {out['createSeconds']:.1f}s; {timing}")
    assert out["modelId"] == [QWEN2_ID, SNOWFLAKE_ID]
    assert any(t.startswith("Loading GPU shader") for t in out["progress"])  # tvmjs ran the libraries
    errors = {"unknown_model": "SpecifiedModelNotFoundError", "after_unload": "ModelNotLoadedError",
              "embed_on_llm": "EmbeddingUnsupportedModelError", "foreign": "NotCapable"}  # fmt: skip
    for name, result in got.items():
        assert name in errors or "error" not in result, (name, result)

    text, usage, models = streamed(got["chat"]["value"])
    assert text == want  # the reference's greedy tokens, one letter each
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (prompt_tokens, MAX_TOKENS)
    assert usage["total_tokens"] == prompt_tokens + MAX_TOKENS
    assert models == {QWEN2_ID}
    again, usage, _ = streamed(got["chat_again"]["value"])
    assert again == want[:2]  # reloaded after its unload
    assert usage["completion_tokens"] == 2

    embedding = got["embed"]["value"]
    assert embedding["model"] == SNOWFLAKE_ID
    # The engine counts the tokenizer's ids; the backend adds [CLS] and [SEP] around each row.
    assert embedding["usage"]["prompt_tokens"] == sum(len(s.encode()) for s in EMBED_INPUT)
    vectors = np.asarray([d["embedding"] for d in embedding["data"]], dtype=np.float64)
    batch = [list(s.encode()) for s in EMBED_INPUT]
    err = float(np.max(np.abs(vectors - libs.library_bert(meta, snowflake_config, batch, library_rule=True))))
    assert err < 1e-4, err

    # Each unload left no WebGPU buffer alive in the worker: tvmjs destroyed them or their device.
    loaded = got["loaded_buffers"]["value"]
    assert loaded["live"] > 0, loaded  # the count sees the models' buffers
    # tvmjs opens one device a load: Qwen2 and snowflake, then Qwen2's reload, then snowflake's.
    for name, devices in [("unloaded_buffers", 2), ("unloaded_again_buffers", 4)]:
        counts = got[name]["value"]
        assert counts["live"] == 0, (name, counts)
        assert counts["devices"] == counts["devicesDestroyed"] == devices, (name, counts)
    # reload(snowflake) with Qwen2 loaded: Qwen2's device is destroyed, snowflake's is in use.
    switched = got["switched_buffers"]["value"]
    assert (switched["devices"], switched["devicesDestroyed"]) == (4, 3), switched
    assert switched["live"] > 0, switched

    # Errors cross the worker as their own classes (and Deno's permission error is Deno's).
    for name, cls in errors.items():
        assert "error" in got[name], (name, got[name])
        assert got[name]["error"]["name"] == cls == got[name]["error"]["className"], (name, got[name])
