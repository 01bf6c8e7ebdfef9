"""web-llm drop-in: pages and worker scripts written the way web-llm's documentation
and examples use its API, importing only py_worker's files (proxy.js, worker-handler.js,
host-handler.js) and passing no appConfig unless web-llm's example would. They run in real
Chromium against the site, with the tiny models; the app files are served from /app/ next to it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, SITE, TINY, TINY_B
from hosts import CountingServer, app_page, ask_worker, python_user_worker

# ---- the app: what a web-llm user writes, with only the import specifiers changed --------------

INDEX_HTML = """<!doctype html><html><head><script type="module">
import * as webllm from "/proxy.js";
window.webllm = webllm;
window.appReady = true;
</script></head><body></body></html>"""

# web-llm's worker.ts, three lines.
WORKER_JS = """import { WebWorkerMLCEngineHandler } from "/worker-handler.js";
const handler = new WebWorkerMLCEngineHandler();
self.onmessage = (msg) => handler.onmessage(msg);
"""

# web-llm's logit-processor example worker: a registry handed to the handler.
LOGIT_WORKER_JS = """import { WebWorkerMLCEngineHandler } from "/worker-handler.js";
const processor = { processLogits: (logits) => logits, processSampledToken: () => {}, resetState: () => {} };
const handler = new WebWorkerMLCEngineHandler();
handler.setLogitProcessorRegistry(new Map([["%s", processor]]));
self.onmessage = (msg) => handler.onmessage(msg);
""".replace("%s", TINY)

# web-llm's sw.ts: the handler is made in "activate".
SW_JS = """import { ServiceWorkerMLCEngineHandler } from "/host-handler.js";
let handler;
self.addEventListener("activate", () => {
  handler = new ServiceWorkerMLCEngineHandler();
});
"""

# A Python user in Pyodide (a worker of their own, as a notebook kernel is): one call to an engine.
PYTHON_USER_JS = python_user_worker("""
import json
import py_worker
progress = []
engine = await py_worker.CreateMLCEngine(
    json.loads(ARGS), init_progress_callback=lambda r: progress.append(r["text"]))
reply = await engine.chat.completions.create(
    messages=[{"role": "user", "content": "Hi"}], max_tokens=6, seed=2, temperature=0.9)
again = await engine.chat.completions.create(
    messages=[{"role": "user", "content": "Hi"}], max_tokens=6, seed=2, temperature=0.9)
text = lambda r: r["choices"][0]["message"]["content"]
json.dumps({"text": text(reply), "again": text(again), "model": reply["model"], "progress": progress})
""")

APP = {
    "index.html": INDEX_HTML,
    "worker.js": WORKER_JS,
    "logit-worker.js": LOGIT_WORKER_JS,
    "sw.js": SW_JS,
    "python-user.js": PYTHON_USER_JS,
}
MESSAGES = [{"role": "user", "content": "Tell me a story about a tiny model."}]


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CountingServer, str]]:
    if not (SITE / "proxy.js").exists() or not (SITE / "models" / TINY / "mlc-chat-config.json").exists():
        pytest.skip("site/ is not built: run ./build.sh")
    folder = tmp_path_factory.mktemp("app")
    for name, text in APP.items():
        (folder / name).write_text(text)
    counting = CountingServer()
    with counting.serving(mounts={"/app/": folder}) as url:
        yield counting, url


@pytest.fixture
def app(browser: Any, app_server: tuple[CountingServer, str]) -> Iterator[Any]:
    with app_page(browser, app_server[1]) as page:
        yield page


def shard_hits(server: CountingServer, model: str) -> int:
    return sum(n for path, n in server.hits.items() if f"/models/{model}/params_shard_" in path)


def dir_bytes(model: str) -> int:
    return sum(p.stat().st_size for p in (SITE / "models" / model).iterdir() if p.is_file())


# ---- tests -------------------------------------------------------------------------------------

WORKER_ENGINE = """async ([models, messages]) => {
  const progress = [];
  const initProgressCallback = (report) => progress.push(report.text);
  const engine = await within(webllm.CreateWebWorkerMLCEngine(
    new Worker(new URL("./worker.js", location.href), { type: "module" }), models, { initProgressCallback }),
    180000, "load");
  window.engine = engine;
  return { modelId: engine.modelId, progress };
}"""


def test_user_worker_script_with_handler_one_model_and_seeds(app: Any) -> None:
    """web-llm's get-started-web-worker: the user's own 3-line worker, no appConfig; the same seed
    gives the same text, streamed or not."""
    loaded = app.evaluate(WORKER_ENGINE, [TINY, MESSAGES])
    assert loaded["modelId"] == [TINY]
    assert any(t.startswith("Finish loading on WebGPU") for t in loaded["progress"])
    out = app.evaluate(
        """async (messages) => {
          const request = { messages, seed: 7, temperature: 0.9, max_tokens: 16 };
          const a = await within(engine.chat.completions.create(request), 60000, "a");
          const b = await within(engine.chat.completions.create(request), 60000, "b");
          const chunks = await engine.chat.completions.create({ ...request, stream: true });
          let streamed = "";
          for await (const chunk of chunks) streamed += chunk.choices[0]?.delta?.content || "";
          const text = (r) => r.choices[0].message.content;
          return { a: text(a), b: text(b), model: a.model, streamed };
        }""",
        MESSAGES,
    )
    assert out["model"] == TINY
    assert out["a"]
    assert out["a"] == out["b"] == out["streamed"]


def test_logit_processor_registry_is_refused_with_a_named_error(app: Any) -> None:
    out = app.evaluate(
        """async (model) => {
          const worker = new Worker(new URL("./logit-worker.js", location.href), { type: "module" });
          try {
            await within(webllm.CreateWebWorkerMLCEngine(worker, model), 60000, "load");
            return { loaded: true };
          } catch (e) {
            const isClass = e instanceof webllm.LogitProcessorNotSupportedError;
            return { name: e.name, fields: e.fields, isClass };
          } finally {
            worker.terminate();
          }
        }""",
        TINY,
    )
    assert out == {
        "name": "LogitProcessorNotSupportedError",
        "isClass": True,
        "fields": {"option": "logitProcessorRegistry", "models": [TINY]},
    }
    main_thread = app.evaluate(
        """() => {
          try { new webllm.MLCEngine({ logitProcessorRegistry: new Map([["m", {}]]) }); return null; }
          catch (e) { return { name: e.name, isClass: e instanceof webllm.UnsupportedEngineOptionError }; }
        }"""
    )
    assert main_thread == {"name": "LogitProcessorNotSupportedError", "isClass": True}


def test_two_models_get_message_runtime_stats_reset_chat(app: Any) -> None:
    """web-llm's multi-models example over the user's worker, then getMessage / runtimeStatsText /
    resetChat per model."""
    assert app.evaluate(WORKER_ENGINE, [[TINY, TINY_B], MESSAGES])["modelId"] == [TINY, TINY_B]
    out = app.evaluate(
        """async ([messages, a, b]) => {
          const ask = (model) =>
            within(engine.chat.completions.create({ messages, model, max_tokens: 4 }), 60000, model);
          const [ra, rb] = await Promise.all([ask(a), ask(b)]);
          const before = { message: await engine.getMessage(a), stats: await engine.runtimeStatsText(a) };
          await engine.resetChat(false, a);
          const after = { message: await engine.getMessage(a), stats: await engine.runtimeStatsText(a),
                          other: await engine.getMessage(b) };
          const text = (r) => r.choices[0].message.content;
          return { models: [ra.model, rb.model], texts: [text(ra), text(rb)], before, after };
        }""",
        [MESSAGES, TINY, TINY_B],
    )
    assert out["models"] == [TINY, TINY_B]
    assert out["before"]["message"] == out["texts"][0]
    prefill = float(out["before"]["stats"].split("prefill: ")[1].split(" ")[0])
    assert prefill > 0
    assert out["after"]["message"] == ""
    reset = "prefill: 0.0000 tokens/sec, decoding: 0.0000 tokens/sec, backend: wgsl (an MLC model directory)"
    assert out["after"]["stats"] == reset  # the backend stays: it is not a statistic
    assert out["after"]["other"] == out["texts"][1]  # the other model is untouched


def test_create_mlc_engine_streams_and_cache_helpers(
    app: Any, app_server: tuple[CountingServer, str]
) -> None:
    """web-llm's get-started (CreateMLCEngine, streaming with usage) and cache-usage examples: the
    cache helpers on the Cache API (default) and on IndexedDB (`useIndexedDBCache`)."""
    counting = app_server[0]
    out = app.evaluate(
        """async ([model, messages]) => {
          const progress = [];
          const initProgressCallback = (r) => progress.push(r.text);
          const created = webllm.CreateMLCEngine(model, { initProgressCallback });
          window.engine = await within(created, 180000, "load");
          const chunks = await engine.chat.completions.create({
            messages, stream: true, stream_options: { include_usage: true },
            seed: 3, temperature: 0.9, max_tokens: 12 });
          let reply = "", usage = null;
          for await (const chunk of chunks) {
            reply += chunk.choices[0]?.delta?.content || "";
            if (chunk.usage) usage = chunk.usage;
          }
          return { reply, usage, message: await engine.getMessage(), progress };
        }""",
        [TINY, MESSAGES],
    )
    assert out["reply"]
    assert out["reply"] == out["message"]
    assert 0 < out["usage"]["completion_tokens"] <= 12
    assert shard_hits(counting, TINY) >= 1

    cache = app.evaluate(
        """async (model) => {
          const listed = await webllm.listCachedModels();
          const has = await webllm.hasModelInCache(model);
          await webllm.deleteModelWeightsInCache(model);
          const hasAfter = await webllm.hasModelInCache(model);
          const estimate = await webllm.storageEstimate();
          return { listed, has, hasAfter, estimate };
        }""",
        TINY,
    )
    mine = [m for m in cache["listed"] if m["model_id"] == TINY]
    assert len(mine) == 1
    assert mine[0]["complete"]
    assert mine[0]["bytes"] == dir_bytes(TINY)  # every file fetched, each counted once
    assert {f["store"] for f in mine[0]["files"]} == {"cache"}
    assert cache["has"] is True
    assert cache["hasAfter"] is False
    assert cache["estimate"]["usage"] >= mine[0]["bytes"]
    assert cache["estimate"]["quota"] > 0

    before = shard_hits(counting, TINY)
    app.evaluate("(model) => within(engine.reload(model), 120000, 'reload')", TINY)
    assert shard_hits(counting, TINY) == before + 1  # the deleted weights were fetched again
    gone = app.evaluate(
        """async (model) => {
          const has = await webllm.hasModelInCache(model);
          await webllm.deleteModelAllInfoInCache(model);
          const listed = (await webllm.listCachedModels()).map((m) => m.model_id);
          return { has, hasAfter: await webllm.hasModelInCache(model), listed };
        }""",
        TINY,
    )
    assert gone == {"has": True, "hasAfter": False, "listed": []}

    # IndexedDB, as web-llm's cache-usage example selects it.
    before_b = shard_hits(counting, TINY_B)
    idb = app.evaluate(
        """async (model) => {
          const appConfig = structuredClone(webllm.prebuiltAppConfig);
          appConfig.useIndexedDBCache = true;
          await engine.setAppConfig(appConfig);
          await within(engine.reload(model), 120000, "reload");
          const listed = await webllm.listCachedModels(appConfig);
          const has = await webllm.hasModelInCache(model, appConfig);
          await webllm.deleteModelInCache(model, appConfig);
          const hasAfter = await webllm.hasModelInCache(model, appConfig);
          const left = (await webllm.listCachedModels(appConfig)).map((m) => m.files.map((f) => f.url));
          await within(engine.reload(model), 120000, "reload again");
          const hi = [{ role: "user", content: "Hi" }];
          const reply = await engine.chat.completions.create({ messages: hi, max_tokens: 3 });
          await webllm.deleteChatConfigInCache(model, appConfig);
          const config = (await webllm.listCachedModels(appConfig))[0].files.map((f) => f.url);
          return { listed, has, hasAfter, left, config, finish: reply.choices[0].finish_reason };
        }""",
        TINY_B,
    )
    mine = [m for m in idb["listed"] if m["model_id"] == TINY_B]
    assert len(mine) == 1
    assert mine[0]["bytes"] == dir_bytes(TINY_B)
    assert {f["store"] for f in mine[0]["files"]} == {"indexeddb"}
    assert idb["has"] is True
    assert idb["hasAfter"] is False
    # deleteModelInCache keeps the chat config
    assert [Path(u).name for u in idb["left"][0]] == ["mlc-chat-config.json"]
    assert shard_hits(counting, TINY_B) == before_b + 2
    assert idb["finish"] in ("stop", "length")
    assert "mlc-chat-config.json" not in [Path(u).name for u in idb["config"]]


def test_service_worker_engine(app: Any) -> None:
    """web-llm's service-worker example: the page registers its own sw.js (the handler made in
    "activate"), then CreateServiceWorkerMLCEngine with no appConfig."""
    out = app.evaluate(
        """async ([model, messages]) => {
          await navigator.serviceWorker.register(new URL("./sw.js", location.href), { type: "module" });
          const progress = [];
          const initProgressCallback = (r) => progress.push(r.text);
          const engine = await within(webllm.CreateServiceWorkerMLCEngine(model, { initProgressCallback }),
            180000, "load");
          const request = { messages, seed: 5, temperature: 0.9, max_tokens: 10 };
          const whole = await within(engine.chat.completions.create(request), 60000, "whole");
          const chunks = await engine.chat.completions.create({ ...request, stream: true });
          let streamed = "";
          for await (const chunk of chunks) streamed += chunk.choices[0]?.delta?.content || "";
          const ok = engine instanceof webllm.ServiceWorkerMLCEngine;
          return { ok, model: whole.model, whole: whole.choices[0].message.content, streamed, progress };
        }""",
        [TINY, MESSAGES],
    )
    assert out["ok"]
    assert out["model"] == TINY
    assert out["whole"]
    assert out["whole"] == out["streamed"]
    assert any(t.startswith("Finish loading") for t in out["progress"])


def test_python_create_mlc_engine_finds_the_site(app: Any) -> None:
    """py_worker.CreateMLCEngine inside Pyodide, from a worker under /app/: it finds the site's
    kernels, tokenizers and app config above its own URL; no glue code."""
    out = ask_worker(app, "./python-user.js", TINY, 180_000)
    assert "ok" in out, out
    got = json.loads(out["ok"])
    assert got["model"] == TINY
    assert got["text"]
    assert got["text"] == got["again"]
    assert any(t.startswith("Finish loading on WebGPU") for t in got["progress"])


def test_app_config_constants_match_python() -> None:
    from py_worker.prebuilt import MODEL_LIB_URL_PREFIX, MODEL_LIB_VERSION
    from py_worker.prebuilt_lists import RELEASES

    text = (ROOT / "js_glue" / "app-config.js").read_text()
    # web-llm's own constants of the newest release listed (0.2.85: "v0_2_84/base")
    assert RELEASES[0]["model_version"] == MODEL_LIB_VERSION
    assert f'export const modelVersion = "{MODEL_LIB_VERSION}";' in text
    assert f'export const modelLibURLPrefix = "{MODEL_LIB_URL_PREFIX}";' in text


DENO = ROOT / "node_modules" / "@deno" / "linux-x64-glibc" / "deno"


@pytest.mark.skipif(not DENO.exists(), reason="no Deno in node_modules (tools/setup.sh installs it)")
def test_typescript_page_type_checks_against_the_declarations(tmp_path: Path) -> None:
    """A TypeScript page in the style of web-llm's examples, checked by `deno check` against
    py_worker's .d.ts files (and a wrong use is refused, so the check can fail)."""
    page = ROOT / "tests" / "browser" / "webllm_page.ts"
    env = {
        "DENO_DIR": str(tmp_path / "deno"),
        "NO_COLOR": "1",
        "DENO_NO_UPDATE_CHECK": "1",
        "PATH": "/usr/bin:/bin",
    }
    config = ROOT / "tests" / "browser" / "deno.json"
    ok = subprocess.run(
        [str(DENO), "check", "--config", str(config), str(page)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "bad.ts"
    bad.write_text(
        f'import * as webllm from "{(ROOT / "js_glue" / "proxy.js").as_uri()}";\n'
        "const engine = await webllm.CreateMLCEngine(42);\n"
    )
    wrong = subprocess.run(
        [str(DENO), "check", "--config", str(config), str(bad)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert wrong.returncode != 0
    assert "TS2345" in wrong.stdout + wrong.stderr


def test_demo_cache_panel_lists_nothing_before_a_load(guarded: Any) -> None:
    page = guarded.open("index.html")
    page.click("button[data-tab=cache]")
    page.wait_for_function("$('cache-estimate').textContent.startsWith('This origin uses')")
    rows = page.evaluate("[...document.querySelectorAll('#cache-table tr')].map((r) => r.textContent)")
    assert rows[1:] == ["nothing cached yet"]


def test_cache_helpers_on_a_gguf_record_and_a_model_library(app: Any) -> None:
    """The helpers' bookkeeping without a load: a GGUF record's one file in the Cache API and a
    record's model library in IndexedDB, put there under the loader's names."""
    out = app.evaluate(
        """async () => {
          const appConfig = { model_list: [
            { model_id: "g", model: new URL("/x/model.gguf", location.href).href },
            { model_id: "m", model: new URL("/y/dir/", location.href).href,
              model_lib: new URL("/y/lib.wasm", location.href).href },
          ] };
          const [gguf, lib] = [appConfig.model_list[0].model, appConfig.model_list[1].model_lib];
          await (await caches.open(webllm.CACHE_STORE_NAME)).put(gguf, new Response(new Uint8Array(1000)));
          const db = await new Promise((ok, fail) => {
            const r = indexedDB.open(webllm.CACHE_STORE_NAME, 1);
            r.onupgradeneeded = () => r.result.createObjectStore("files");
            r.onsuccess = () => ok(r.result); r.onerror = () => fail(r.error); });
          await new Promise((ok, fail) => {
            const tx = db.transaction("files", "readwrite");
            tx.objectStore("files").put(new ArrayBuffer(500), lib);
            tx.oncomplete = ok; tx.onerror = () => fail(tx.error); });
          db.close();
          const size = (list) =>
            Object.fromEntries(list.map((m) => [m.model_id, [m.bytes, m.complete, m.files[0].part]]));
          const before = size(await webllm.listCachedModels(appConfig));
          const has = [];
          for (const id of ["g", "m"]) has.push(await webllm.hasModelInCache(id, appConfig));
          await webllm.deleteModelWeightsInCache("g", appConfig);
          await webllm.deleteModelWasmInCache("m", appConfig);
          const after = size(await webllm.listCachedModels(appConfig));
          let missing = null;
          try { await webllm.hasModelInCache("nope", appConfig); } catch (e) {
            missing = { name: e.name, isClass: e instanceof webllm.ModelNotFoundError }; }
          return { before, has, after, gone: await webllm.hasModelInCache("g", appConfig), missing };
        }"""
    )
    assert out["before"] == {"g": [1000, True, "weights"], "m": [500, False, "wasm"]}
    assert out["has"] == [True, False]
    assert out["after"] == {}
    assert out["gone"] is False
    assert out["missing"] == {"name": "ModelNotFoundError", "isClass": True}
