"""The browser stack end to end: a page with only the script tag, the proxy, the module worker,
Pyodide and the kernels, with a tiny model. The engine's behaviour (streams, early break,
interrupt, two models routed by `model`, a terminated worker) runs on both backends a page without
a hardware GPU has: our WebGPU kernels on SwiftShader (the tiny MLC dir) and llama.cpp in
WebAssembly (the tiny GGUF, which the engine sends to wasm on a software adapter)."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import TINY, TINY_B, TINY_GGUF, Guarded

from py_worker.errors import error_to_dict
from py_worker.protocol.chat import validate_chat_request

LOAD = """async ([models, extra]) => {
  window.progress = [];
  window.engine = await within(PyWorker.CreateWebWorkerMLCEngine(models,
    {initProgressCallback: (r) => progress.push(r.text), ...(extra || {})}), 120000, "load");
  return engine.modelId;
}"""

USER = [{"role": "user", "content": "Tell me a story about a tiny model."}]

FINISHED = {"wgsl": "Finish loading on WebGPU", "wasm": "Finish loading on WebAssembly - llama.cpp"}
MODELS = {"wgsl": (TINY, TINY_B), "wasm": (TINY_GGUF, TINY)}
"""Per backend, the model under test and a second one to load beside it (wasm: a wgsl one)."""


@pytest.fixture(params=sorted(FINISHED))
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def load(g: Guarded, models: Any = TINY, extra: dict[str, Any] | None = None) -> list[str]:
    g.open("bare.html")
    loaded: list[str] = g.js(LOAD, [models, extra])
    return loaded


def test_bare_page_streams_same_text_as_worker(guarded: Guarded, backend: str) -> None:
    model = MODELS[backend][0]
    assert load(guarded, model) == [model]
    assert guarded.js("(f) => progress.some((t) => t.startsWith(f))", FINISHED[backend])
    result = guarded.js(
        """async (messages) => {
          const request = {messages, seed: 11, temperature: 0.9, max_tokens: 24};
          const chunks = [];
          const init = engine.chat.completions.create({...request, stream: true});
          const stream = await within(init, 60000, "init");
          for await (const c of stream) chunks.push(c);
          const whole = await within(engine.chat.completions.create(request), 60000, "non-streaming");
          return {chunks, whole};
        }""",
        USER,
    )
    chunks = result["chunks"]
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert len(chunks) > 2
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    whole = result["whole"]["choices"][0]["message"]["content"]
    assert streamed == whole  # same seed: the proxy relays exactly what the worker's engine made
    assert streamed


def test_break_early_then_new_request(guarded: Guarded, backend: str) -> None:
    load(guarded, MODELS[backend][0])
    result = guarded.js(
        """async (messages) => {
          const seen = [];
          // ignore_eos: unseeded requests to a random model; only max_tokens may end them.
          const request = {messages, stream: true, max_tokens: 150, ignore_eos: true};
          const init = engine.chat.completions.create(request);
          const stream = await within(init, 60000, "init");
          for await (const c of stream) { seen.push(c); if (seen.length === 2) break; }
          const again = {messages, max_tokens: 5, ignore_eos: true};
          const next = await within(engine.chat.completions.create(again), 30000, "next");
          const pull = engine.sendRequest("completionStreamNextChunk", {streamId: stream.streamId});
          const afterBreak = await within(pull.then(() => "still open", (e) => e.name), 30000, "closed");
          return {seen: seen.length, next, afterBreak};
        }""",
        USER,
    )
    assert result["seen"] == 2
    assert result["next"]["choices"][0]["finish_reason"] == "length"
    assert result["next"]["usage"]["completion_tokens"] == 5
    assert result["afterBreak"] == "StreamNotFoundError"


def test_interrupt_stops_answer_and_next_is_complete(guarded: Guarded, backend: str) -> None:
    load(guarded, MODELS[backend][0])
    result = guarded.js(
        """async (messages) => {
          let n = 0, finish = null;
          const request = {messages, stream: true, max_tokens: 150, ignore_eos: true};
          const init = engine.chat.completions.create(request);
          const stream = await within(init, 60000, "init");
          for await (const c of stream) {
            n += 1;
            if (n === 3) await engine.interruptGenerate();
            if (c.choices.length && c.choices[0].finish_reason) finish = c.choices[0].finish_reason;
          }
          const again = engine.chat.completions.create({messages, max_tokens: 6, ignore_eos: true});
          const next = await within(again, 30000, "after interrupt");
          return {n, finish, next};
        }""",
        USER,
    )
    assert result["finish"] == "abort"
    assert result["n"] < 150
    assert result["next"]["choices"][0]["finish_reason"] == "length"
    assert result["next"]["usage"]["completion_tokens"] == 6


def test_two_models_routed_and_unclear_fails_on_main_thread(guarded: Guarded, backend: str) -> None:
    first, second = MODELS[backend]
    assert load(guarded, [first, second]) == [first, second]
    result = guarded.js(
        """async ([messages, a, b]) => {
          const ask = (model) => engine.chat.completions.create({messages, model, max_tokens: 3});
          const req = (model) => within(ask(model), 30000, model);
          const [ra, rb] = await Promise.all([req(a), req(b)]);
          let posted = 0;
          const real = engine.worker.postMessage.bind(engine.worker);
          engine.worker.postMessage = (m) => { posted += 1; real(m); };
          let unclear, missing;
          try { await engine.chat.completions.create({messages, max_tokens: 3}); } catch (e) {
            unclear = {...describeError(e), isClass: e instanceof PyWorker.UnclearModelToUseError};
          }
          try { await engine.chat.completions.create({messages, model: "nope", max_tokens: 3}); } catch (e) {
            missing = describeError(e);
          }
          engine.worker.postMessage = real;
          // The same two requests sent raw: Python's own refusals.
          const raw = (request) => new Promise((resolve) => {
            const uuid = crypto.randomUUID();
            const on = (ev) => {
              if (ev.data && ev.data.uuid === uuid && ev.data.kind === "throw") {
                engine.worker.removeEventListener("message", on);
                resolve(ev.data.content);
              }
            };
            engine.worker.addEventListener("message", on);
            real({kind: "chatCompletionNonStreaming", uuid, content: {request, modelId: [a, b]}});
          });
          const python = {
            unclear: await within(raw({messages, max_tokens: 3}), 30000, "raw unclear"),
            missing: await within(raw({messages, model: "nope", max_tokens: 3}), 30000, "raw missing"),
          };
          return {models: [ra.model, rb.model], unclear, missing, python, posted};
        }""",
        [USER, first, second],
    )
    assert result["models"] == [first, second]
    assert result["unclear"]["name"] == "UnclearModelToUseError"
    assert result["unclear"]["isClass"]
    assert result["unclear"]["isPyWorkerError"]
    assert result["posted"] == 0  # raised before anything went to the worker
    # The proxy refuses with Python's class, message and fields.
    for case in ("unclear", "missing"):
        proxy, python = result[case], result["python"][case]
        assert (proxy["name"], proxy["message"], proxy["fields"]) == (
            python["name"],
            python["message"],
            python["fields"],
        ), case
    assert result["missing"]["fields"] == {
        "requested": "nope",
        "loaded": [first, second],
        "request_name": "ChatCompletionRequest",
    }


@pytest.mark.parametrize(
    "extra",
    [{"temperature": -1}, {"top_p": 0}, {"stream": True, "n": 2}, {"seed": 1.5}, {"messages": []}],
    ids=["temperature", "top_p", "stream-n", "seed", "empty-messages"],
)
def test_invalid_field_rejected_with_python_class_and_message(
    guarded: Guarded, extra: dict[str, Any]
) -> None:
    request = {"messages": USER, "max_tokens": 4, **extra}
    try:
        validate_chat_request(request)
    except Exception as exc:
        expected = error_to_dict(exc)
    else:
        pytest.fail("the host validator accepted the request")
    load(guarded)
    got = guarded.js(
        """async (request) => {
          try { await within(engine.chat.completions.create(request), 30000, "invalid"); return null; }
          catch (e) { return {...describeError(e), isClass: e instanceof PyWorker[e.name]}; }
        }""",
        request,
    )
    assert got is not None
    assert (got["name"], got["message"]) == (expected["name"], expected["message"])
    assert got["isClass"]
    assert got["isPyWorkerError"]


def test_unknown_kind_and_no_model_get_a_reply(guarded: Guarded) -> None:
    guarded.open("bare.html")
    result = guarded.js(
        """async () => {
          const engine = await PyWorker.createEngine({});
          const outcome = (p) => p.then(() => "no error", (e) => [e.name, e instanceof PyWorker[e.name]]);
          const catchName = (p) => within(outcome(p), 60000, "reply");
          return {
            unknown: await catchName(engine.sendRequest("noSuchKind", {})),
            stats: await catchName(engine.runtimeStatsText()),
            chat: await catchName(engine.chat.completions.create({messages: [{role: "user", content: "x"}]})),
          };
        }"""
    )
    assert result["unknown"] == ["UnknownMessageKindError", True]
    assert result["stats"] == ["ModelNotLoadedError", True]  # from the worker, re-thrown as the class
    assert result["chat"] == ["ModelNotLoadedError", True]  # from the proxy, before posting


def test_terminated_worker_recovers_with_one_reload(guarded: Guarded, backend: str) -> None:
    load(guarded, MODELS[backend][0], {"heartbeatTimeoutMs": 4000})
    result = guarded.js(
        """async (messages) => {
          const finished = () => progress.filter((t) => t.startsWith("Finish loading")).length;
          const before = finished();
          engine.worker.terminate();
          const ask = () => engine.chat.completions.create({messages, max_tokens: 4, ignore_eos: true});
          const first = await within(ask(), 120000, "recovery");
          const afterFirst = finished();
          const second = await within(ask(), 30000, "second");
          return {before, afterFirst, afterSecond: finished(), restarts: engine.workerRestarts,
                  tokens: [first.usage.completion_tokens, second.usage.completion_tokens]};
        }""",
        USER,
    )
    assert result["before"] == 1
    assert result["afterFirst"] == 2  # the new worker reloaded the model once...
    assert result["afterSecond"] == 2  # ...and remembered it
    assert result["restarts"] == 1
    assert result["tokens"] == [4, 4]


def test_network_guard_catches_other_hosts(guarded: Guarded) -> None:
    guarded.open("bare.html")
    outcome = guarded.js("fetch('http://example.com/x').then(() => 'fetched', () => 'failed')")
    assert outcome == "failed"
    assert guarded.blocked == ["http://example.com/x"]
    guarded.blocked.clear()  # this test provoked it on purpose
