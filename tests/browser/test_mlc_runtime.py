"""In the browser, through the whole user path (proxy → worker → Python → kernel shim → mlc): a
record whose model library needs a tvmjs the site does not ship fails fast with
ModelLibRuntimeError (the class, with its fields), before its weights or tokenizer are fetched.
The library is a tiny valid wasm whose imports are those of a library built for a tvmjs newer
than 0.27.0-dev0 (it imports ``env.TVMFFIEnvSetStream``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import SITE, TINY
from hosts import CountingServer, app_page

INDEX_HTML = """<!doctype html><html><head><script type="module">
import * as webllm from "/proxy.js";
window.webllm = webllm;
window.appReady = true;
</script></head><body></body></html>"""

WORKER_JS = """import { WebWorkerMLCEngineHandler } from "/worker-handler.js";
const handler = new WebWorkerMLCEngineHandler();
self.onmessage = (msg) => handler.onmessage(msg);
"""


def wasm_importing(names: list[str]) -> bytes:
    """A valid wasm module that imports each of ``names`` from "env" as a () -> () function."""

    def leb(n: int) -> bytes:
        out = bytearray()
        while True:
            byte, n = n & 0x7F, n >> 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                return bytes(out)

    def text(s: str) -> bytes:
        return leb(len(s)) + s.encode()

    def section(sid: int, body: bytes) -> bytes:
        return bytes([sid]) + leb(len(body)) + body

    entries = b"".join(text("env") + text(n) + b"\x00\x00" for n in names)
    return (
        b"\x00asm\x01\x00\x00\x00" + section(1, b"\x01\x60\x00\x00") + section(2, leb(len(names)) + entries)
    )


NEWER = ["TVMFFIWasmSafeCall", "TVMFFIWasmFunctionDeleter", "TVMFFIEnvSetStream"]


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CountingServer, str]]:
    if not (SITE / "proxy.js").exists() or not (SITE / "tvmjs" / "0.18.0-dev2" / "index.js").exists():
        pytest.skip("site/ is not built with its tvmjs runtimes: run ./build.sh")
    if not (SITE / "models" / TINY / "mlc-chat-config.json").exists():
        pytest.skip("site/ has no tiny model: run ./build.sh")
    folder = tmp_path_factory.mktemp("app")
    (folder / "index.html").write_text(INDEX_HTML)
    (folder / "worker.js").write_text(WORKER_JS)
    (folder / "newer-webgpu.wasm").write_bytes(wasm_importing(NEWER))
    counting = CountingServer()
    with counting.serving(mounts={"/app/": folder}) as url:
        yield counting, url


@pytest.fixture
def app(browser: Any, app_server: tuple[CountingServer, str]) -> Iterator[Any]:
    with app_page(browser, app_server[1]) as page:
        yield page


def test_a_library_needing_an_unshipped_tvmjs_fails_fast_with_a_named_error(
    app: Any, app_server: tuple[CountingServer, str]
) -> None:
    out = app.evaluate(
        """async (tiny) => {
          const appConfig = { model_list: [{ model_id: "needs-newer-tvmjs", model: `/models/${tiny}/`,
            model_lib: "/app/newer-webgpu.wasm", model_type: "LLM" }] };
          const worker = new Worker(new URL("./worker.js", location.href), { type: "module" });
          try {
            const made = webllm.CreateWebWorkerMLCEngine(worker, "needs-newer-tvmjs", { appConfig });
            await within(made, 120000, "load");
            return { loaded: true };
          } catch (e) {
            return { name: e.name, isClass: e instanceof webllm.ModelLibRuntimeError,
                     isLoadError: e instanceof webllm.ModelLoadError, fields: e.fields, message: e.message };
          } finally {
            worker.terminate();
          }
        }""",
        TINY,
    )
    assert out["name"] == "ModelLibRuntimeError", out
    assert out["isClass"]
    assert out["isLoadError"]
    assert out["fields"]["model_lib"] == "/app/newer-webgpu.wasm"
    assert out["fields"]["missing"] == ["env.TVMFFIEnvSetStream"]
    assert out["fields"]["shipped"] == ["0.27.0-dev0", "0.24.0-dev1", "0.18.0-dev2"]
    assert "newer than 0.27.0-dev0" in out["fields"]["needs"]
    hits = app_server[0].hits
    assert not any(f"/models/{TINY}/params_shard_" in p or p.endswith("tokenizer.json") for p in hits), hits
