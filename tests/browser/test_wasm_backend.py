"""The `wasm` backend: llama.cpp compiled to WebAssembly (npm @wllama/wllama) behind the same
kernel ABI, through the whole stack in Chromium. SwiftShader is a software WebGPU adapter, so a
GGUF record without a backend goes to wasm here, and says so in its load progress and in
runtimeStatsText; a record's backend overrides the choice."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import hosts
import jsonschema
import openai.types.chat as oc
import pytest
from conftest import ROOT, SITE, TINY_GGUF, Guarded
from hosts import GuardedContext

from py_worker.engine import MLCEngine
from py_worker.reference import ReferenceKernels
from tests.threads import run_async

GGUF = "SmolLM2-135M-Instruct-Q4_1"

pytestmark = pytest.mark.skipif(
    not (SITE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf").exists(), reason="site/ has no SmolLM2 GGUF"
)

LOAD = """async ([model, backend]) => {
  const appConfig = await (await fetch("app-config.json")).json();
  for (const r of appConfig.model_list) if (backend) r.backend = backend;
  window.progress = [];
  window.engine = await within(PyWorker.CreateWebWorkerMLCEngine(model,
    {appConfig, initProgressCallback: (r) => progress.push(r.text)}), 300000, "load");
  return {loaded: engine.modelId, last: progress[progress.length - 1]};
}"""

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_a_gguf_on_a_software_adapter_runs_on_llama_cpp(guarded: Guarded) -> None:
    guarded.open("bare.html")
    loaded = guarded.js(LOAD, [GGUF, None])
    assert loaded["loaded"] == [GGUF]
    assert loaded["last"].startswith("Finish loading on WebAssembly - llama.cpp"), loaded
    why = "[backend wasm: the WebGPU adapter is a fallback one (google swiftshader)]"
    assert why in loaded["last"], loaded
    out = guarded.js(
        """async (messages) => {
          const ask = {messages, temperature: 0, max_tokens: 12};
          const whole = await within(engine.chat.completions.create(ask), 120000, "whole");
          const stream = await within(engine.chat.completions.create({...ask, stream: true}), 60000, "open");
          let text = "";
          for await (const chunk of stream) text += chunk.choices[0]?.delta?.content || "";
          const follow = [...messages, whole.choices[0].message, {role: "user", content: "And of Italy?"}];
          const next = {messages: follow, temperature: 0, max_tokens: 12};
          const second = await within(engine.chat.completions.create(next), 120000, "turn 2");
          const stats = await engine.runtimeStatsText();
          return {whole, text, second, stats};
        }""",
        QUESTION,
    )
    reply = oc.ChatCompletion.model_validate(out["whole"])
    answer = reply.choices[0].message.content or ""
    assert "Paris" in answer  # a real model, really run by llama.cpp
    assert out["text"] == answer  # greedy: the stream is the same text
    assert "Rome" in (oc.ChatCompletion.model_validate(out["second"]).choices[0].message.content or "")
    assert out["stats"].endswith("backend: wasm (the WebGPU adapter is a fallback one (google swiftshader))")


def test_grammar_interrupt_and_a_forced_backend(guarded: Guarded) -> None:
    guarded.open("bare.html")
    guarded.js(LOAD, [GGUF, None])
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}},
        "required": ["city"],
    }
    out = guarded.js(
        """async ([messages, schema]) => {
          const fmt = {type: "json_schema", json_schema: {name: "city", schema}};
          const json = await within(engine.chat.completions.create(
            {messages, temperature: 0, max_tokens: 40, response_format: fmt}), 120000, "json");
          const stream = await within(engine.chat.completions.create(
            {messages, stream: true, temperature: 0, max_tokens: 200, ignore_eos: true}), 60000, "open");
          let finish = null, n = 0;
          for await (const chunk of stream) {
            if (++n === 2) engine.interruptGenerate();
            finish = chunk.choices[0]?.finish_reason || finish;
          }
          const short = {messages, temperature: 0, max_tokens: 4};
          const after = await within(engine.chat.completions.create(short), 60000, "after");
          return {json, finish, after};
        }""",
        [QUESTION, schema],
    )
    content = oc.ChatCompletion.model_validate(out["json"]).choices[0].message.content or ""
    jsonschema.validate(json.loads(content), schema)
    assert out["finish"] == "abort"
    assert oc.ChatCompletion.model_validate(out["after"]).choices[0].finish_reason in ("stop", "length")
    forced = guarded.js(LOAD, [GGUF, "wgsl"])
    assert forced["last"].startswith("Finish loading on WebGPU - "), forced
    assert "[backend wgsl: the record's backend]" in forced["last"]


def reference_reply(request: dict[str, Any]) -> dict[str, Any]:
    """The same GGUF and request on host CPython, NumPy (a thread of its own: playwright's sync
    API holds this thread's event loop)."""

    async def run() -> dict[str, Any]:
        record = {"model_id": GGUF, "model": str(SITE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf")}
        engine = MLCEngine(ReferenceKernels(), {"model_list": [record]})
        await engine.reload(GGUF)
        reply = await engine.chat.completions.create(**request)
        assert isinstance(reply, dict)
        return reply

    return run_async(run())


LOGPROB_TOLERANCE = 0.15
"""nats: llama.cpp multiplies Q4_1 weights with activations it quantises to 8 bits (Q8_1), the
reference with f32 activations; that difference, not a bug, is what this bounds."""


def test_logprobs_match_the_numpy_reference_until_a_close_call(guarded: Guarded) -> None:
    """llama.cpp's log-probabilities of the same GGUF against the NumPy reference's, greedy: the
    same tokens, each within the tolerance, until (if ever) they part at a close call; and the
    same answer where llama.cpp takes the argmax itself."""
    request = {"messages": QUESTION, "temperature": 0, "max_tokens": 16, "logprobs": True, "top_logprobs": 2}
    guarded.open("bare.html")
    guarded.js(LOAD, [GGUF, None])
    got = guarded.js("async (r) => within(engine.chat.completions.create(r), 120000, 'logprobs')", request)
    # Without logprobs the argmax is llama.cpp's own greedy sampler: the same tokens.
    plain = {k: v for k, v in request.items() if k not in ("logprobs", "top_logprobs")}
    fast = guarded.js("async (r) => within(engine.chat.completions.create(r), 120000, 'greedy')", plain)
    assert fast["choices"][0]["message"]["content"] == got["choices"][0]["message"]["content"]
    want = reference_reply(request)
    steps = 0
    for g, w in zip(
        got["choices"][0]["logprobs"]["content"], want["choices"][0]["logprobs"]["content"], strict=False
    ):
        if g["token"] != w["token"]:  # the two may part only where the reference's top two are close
            top = w["top_logprobs"]
            assert len(top) > 1, (steps, g, w)
            assert top[0]["logprob"] - top[1]["logprob"] < LOGPROB_TOLERANCE, (steps, g, w)
            break
        assert abs(g["logprob"] - w["logprob"]) < LOGPROB_TOLERANCE, (steps, g, w)
        steps += 1
    assert steps >= 4, steps


THREADS = """async ([model, threads]) => {
  const appConfig = await (await fetch("app-config.json")).json();
  for (const r of appConfig.model_list) if (r.model_id === model) r.threads = threads;
  const progress = [];
  const initProgressCallback = (r) => progress.push(r.text);
  try {
    const loading = PyWorker.CreateWebWorkerMLCEngine(model, {appConfig, initProgressCallback});
    window.engine = await within(loading, 120000, "load");
  } catch (e) { return {error: describeError(e), isolated: crossOriginIsolated}; }
  const reply = await within(engine.chat.completions.create(
    {messages: [{role: "user", content: "Hi"}], max_tokens: 4, ignore_eos: true}), 60000, "answer");
  const last = progress[progress.length - 1];
  return {last, tokens: reply.usage.completion_tokens, isolated: crossOriginIsolated};
}"""


def test_threads_on_an_isolated_page_and_a_named_refusal_elsewhere(guarded: Guarded) -> None:
    """llama.cpp's threads share memory, so more than one needs COOP/COEP; without them a record
    asking for two is refused by name, and the default is one thread."""
    guarded.open("bare.html")
    refused = guarded.js(THREADS, [TINY_GGUF, 2])
    assert refused["isolated"] is False
    assert refused["error"]["name"] == "WasmThreadsError", refused
    assert refused["error"]["fields"] == {"threads": 2, "isolated": False}
    assert "Cross-Origin-Embedder-Policy: require-corp" in refused["error"]["message"]
    one = guarded.js(THREADS, [TINY_GGUF, None])
    assert "llama.cpp, 1 thread (" in one["last"], one
    guarded.open("isolated.html")
    two = guarded.js(THREADS, [TINY_GGUF, 2])
    assert two["isolated"] is True
    assert "llama.cpp, 2 threads (" in two["last"], two
    assert two["tokens"] == 4


def test_serve_prompt_answers_through_wasm_and_says_so() -> None:
    """The README's headless command on a machine without a GPU (SwiftShader only): the default
    model answers on llama.cpp, and the output says which backend ran it and why."""
    ask = [sys.executable, "tools/serve.py", "--prompt", QUESTION[0]["content"], "--max-tokens", "12"]
    ask += ["--temperature", "0", "--timeout", "400"]
    done = subprocess.run(ask, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Paris" in done.stdout, done.stdout
    assert "[backend wasm: the WebGPU adapter is a fallback one (google swiftshader)]" in done.stderr


EMBED_GGUF = "all-MiniLM-L6-v2-F32-gguf"
TEXTS = ["The cat sat on the mat.", "A cat is sitting on a rug.", "Stock prices fell sharply today."]


def reference_embeddings(texts: list[str]) -> list[list[float]]:
    """The same model (its MLC conversion, the same f32 weights) on the NumPy reference encoder."""

    async def run() -> list[list[float]]:
        model = "all-MiniLM-L6-v2-q0f32"
        record = {"model_id": model, "model": str(SITE / "models" / model), "model_type": "embedding"}
        engine = MLCEngine(ReferenceKernels(), {"model_list": [record]})
        await engine.reload(model)
        reply = await engine.embeddings.create(input=texts)
        return [d["embedding"] for d in reply["data"]]

    return run_async(run())


def test_an_embedding_gguf_embeds_on_llama_cpp_like_the_reference(guarded: Guarded) -> None:
    """all-MiniLM-L6-v2 as a bert GGUF: our kernels do not run that architecture, llama.cpp does;
    its vectors equal the NumPy reference encoder's of the same weights ([CLS]/[SEP], mean
    pooling, L2 norm) to f32 rounding."""
    guarded.open("bare.html")
    out = guarded.js(
        """async ([model, texts]) => {
          const progress = [];
          const engine = await within(PyWorker.CreateWebWorkerMLCEngine(model,
            {initProgressCallback: (r) => progress.push(r.text)}), 300000, "load");
          const reply = await within(engine.embeddings.create({input: texts}), 120000, "embed");
          let chat = null;
          try { await engine.chat.completions.create({messages: [{role: "user", content: "Hi"}]}); }
          catch (e) { chat = e.name; }
          return {vectors: reply.data.map((d) => d.embedding), last: progress[progress.length - 1], chat};
        }""",
        [EMBED_GGUF, TEXTS],
    )
    assert "Finish loading on WebAssembly - llama.cpp" in out["last"], out["last"]
    assert out["chat"] == "IncorrectPipelineLoadedError"  # an encoder does not chat
    want = reference_embeddings(TEXTS)
    for got, ref in zip(out["vectors"], want, strict=True):
        assert len(got) == len(ref) == 384
        dot = sum(a * b for a, b in zip(got, ref, strict=True))
        assert dot > 1 - 1e-5, dot  # both unit vectors: the cosine


HOST_URLS = {
    "shared": "shared-worker.js?pingMs=500&deadMs=20000",
    "service": "service-worker.js?pingMs=500&deadMs=20000",
}
ANSWER = """async () => {
  const ask = {messages: [{role: "user", content: "Hi"}], max_tokens: 4, ignore_eos: true};
  const reply = await within(engine.chat.completions.create(ask), 60000, "answer");
  return {tokens: reply.usage.completion_tokens, stats: await engine.runtimeStatsText()};
}"""


@pytest.mark.parametrize("host", sorted(HOST_URLS))
def test_a_gguf_on_the_shared_and_service_hosts(tabs: GuardedContext, host: str) -> None:
    """Neither a service worker nor Chromium's SharedWorker can start workers (Chromium has no
    nested workers in shared workers), and llama.cpp needs one: there the machine's choice is our
    kernels, and the stats say why."""
    page = tabs.page()
    assert hosts.open_engine(page, host, HOST_URLS[host], TINY_GGUF) == [TINY_GGUF]
    out = page.evaluate(ANSWER)
    assert out["tokens"] == 4
    why = "the WebGPU adapter is a fallback one (google swiftshader)"
    context = {"shared": "a shared worker", "service": "a service worker"}[host]
    cannot = f"but llama.cpp needs a worker of its own, which {context} cannot start"
    assert out["stats"].endswith(f"backend: wgsl ({why}, {cannot})"), out
