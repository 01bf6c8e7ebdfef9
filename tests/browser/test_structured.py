"""Structured output through the whole browser stack: the page's proxy, the worker's Python
engine, @mlc-ai/web-xgrammar and the GPU sampler's mask on SwiftShader.

Every answer must parse and match its schema (tests/structured_cases.py) on the random-weight
tiny model, streamed and not, and validate as the openai package's models; an EBNF grammar's
answer is in its language; a schema that does not compile reaches the page as GrammarError, and
the model answers the next request; a tool call goes round (call, tool message, answer). The
same holds for Python in Pyodide (py_worker.CreateMLCEngine in a user's worker). SmolLM2 (slow)
answers a few schemas too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai.types.chat as oc
import pytest
from conftest import SITE, TINY, Guarded
from hosts import CountingServer, app_page, ask_worker, python_user_worker

from tests.structured_cases import EBNF_LANGUAGE, EBNF_YES_NO, MAX_TOKENS, SCHEMAS

LOAD = """async (model) => {
  window.engine = await within(PyWorker.CreateWebWorkerMLCEngine(model), 300000, "load");
  return engine.modelId;
}"""

# Each request non-streamed, then streamed; both answers come back with the stream's chunks.
ASK_ALL = """async (requests) => {
  const out = [];
  for (const request of requests) {
    const whole = await within(engine.chat.completions.create(request), 300000, "whole");
    const again = {...request, stream: true, seed: request.seed + 100};
    const stream = await within(engine.chat.completions.create(again), 60000, "open");
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    out.push({whole, chunks});
  }
  return out;
}"""

USER = [{"role": "user", "content": "Describe one thing as JSON."}]


def streamed(chunks: list[dict[str, Any]]) -> tuple[str, str | None]:
    text, finish = "", None
    for chunk in chunks:
        oc.ChatCompletionChunk.model_validate(chunk)
        for choice in chunk["choices"]:
            text += choice["delta"].get("content") or ""
            finish = choice["finish_reason"] or finish
    return text, finish


def schema_request(name: str, seed: int) -> dict[str, Any]:
    fmt = {"type": "json_schema", "json_schema": {"name": name, "schema": SCHEMAS[name]}}
    return {"messages": USER, "max_tokens": MAX_TOKENS, "seed": seed, "response_format": fmt}


def test_every_schema_holds_through_the_proxy(guarded: Guarded) -> None:
    guarded.open("bare.html")
    assert guarded.js(LOAD, TINY) == [TINY]
    names = list(SCHEMAS)
    answers = guarded.js(ASK_ALL, [schema_request(name, seed) for seed, name in enumerate(names)])
    for name, got in zip(names, answers, strict=True):
        oc.ChatCompletion.model_validate(got["whole"])
        choice = got["whole"]["choices"][0]
        assert choice["finish_reason"] == "stop", (name, choice)
        jsonschema.validate(json.loads(choice["message"]["content"]), SCHEMAS[name])
        text, finish = streamed(got["chunks"])
        assert finish == "stop", (name, text)
        jsonschema.validate(json.loads(text), SCHEMAS[name])


def test_grammar_and_a_bad_schema_by_name(guarded: Guarded) -> None:
    guarded.open("bare.html")
    guarded.js(LOAD, TINY)
    result = guarded.js(
        """async ([messages, grammar]) => {
          const ask = (extra) =>
            within(engine.chat.completions.create({messages, max_tokens: 16, ...extra}), 120000, "ask");
          const outcome = (p) => p.then(() => null, (e) => describeError(e));
          const ebnf = await ask({seed: 7, n: 2, response_format: {type: "grammar", grammar}});
          const bad = {type: "object", properties: {x: {$ref: "#/$defs/missing"}}};
          const badFormat = {type: "json_object", schema: JSON.stringify(bad)};
          const badSchema = await outcome(ask({response_format: badFormat}));
          const badGrammar = await outcome(ask({response_format: {type: "grammar", grammar: "root ::= "}}));
          const seven = {type: "json_object", schema: '{"const": 7}'};
          const after = await ask({seed: 1, max_tokens: 40, response_format: seven});
          return {ebnf, badSchema, badGrammar, after};
        }""",
        [USER, EBNF_YES_NO],
    )
    oc.ChatCompletion.model_validate(result["ebnf"])
    assert {c["message"]["content"] for c in result["ebnf"]["choices"]} <= EBNF_LANGUAGE
    for bad in (result["badSchema"], result["badGrammar"]):
        assert bad["name"] == "GrammarError", bad
        assert bad["isPyWorkerError"]
    assert "missing" in result["badSchema"]["fields"]["reason"]
    assert result["badGrammar"]["fields"]["kind"] == "ebnf"
    assert result["after"]["choices"][0]["message"]["content"] == "7"


SMOL = "SmolLM2-135M-Instruct-q4f32_1"


@pytest.mark.slow
@pytest.mark.skipif(not (SITE / "models" / SMOL).exists(), reason=f"site/ has no {SMOL}")
def test_smollm2_answers_schemas_through_the_proxy(guarded: Guarded) -> None:
    guarded.open("bare.html")
    assert guarded.js(LOAD, SMOL) == [SMOL]
    names = ["flat-object"]  # our kernels with a real model; every schema: the GGUF test below
    requests = [{**schema_request(name, 0), "temperature": 0} for name in names]
    answers = guarded.js(ASK_ALL, requests)
    for name, got in zip(names, answers, strict=True):
        content = got["whole"]["choices"][0]["message"]["content"]
        jsonschema.validate(json.loads(content), SCHEMAS[name])
        text, finish = streamed(got["chunks"])
        assert finish == "stop"
        assert text == content  # greedy: the stream and the whole answer are the same text


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 12}, "unit": {"enum": ["C", "F"]}},
            "required": ["city", "unit"],
        },
    },
}

# The tiny model with room for the tools' system prompt (its byte-level tokens are many).
LOAD_LONG = """async (model) => {
  const appConfig = await (await fetch("app-config.json")).json();
  for (const r of appConfig.model_list) r.overrides = {...(r.overrides || {}), context_window_size: 2048};
  window.engine = await within(PyWorker.CreateWebWorkerMLCEngine(model, {appConfig}), 300000, "load");
  return engine.modelId;
}"""


def test_tool_call_round_trip_through_the_proxy(guarded: Guarded) -> None:
    """A forced call (streamed and not) → the tool's result as a `tool` message → a final answer."""
    guarded.open("bare.html")
    assert guarded.js(LOAD_LONG, TINY) == [TINY]
    result = guarded.js(
        """async (tools) => {
          const messages = [{role: "user", content: "Weather in Paris?"}];
          const base = {messages, tools, tool_choice: "required", max_tokens: 200};
          const call = await within(engine.chat.completions.create({...base, seed: 4}), 120000, "call");
          const streamed = engine.chat.completions.create({...base, seed: 5, stream: true});
          const stream = await within(streamed, 60000, "open");
          const chunks = [];
          for await (const chunk of stream) chunks.push(chunk);
          const asked = call.choices[0].message;
          const follow = [...messages, {role: "assistant", content: null, tool_calls: asked.tool_calls},
            {role: "tool", tool_call_id: asked.tool_calls[0].id, content: '{"celsius": 21}'}];
          const answer = await within(engine.chat.completions.create(
            {messages: follow, tools, tool_choice: "none", seed: 1, max_tokens: 8}), 120000, "answer");
          return {call, chunks, answer};
        }""",
        [WEATHER],
    )
    call = oc.ChatCompletion.model_validate(result["call"]).choices[0]
    assert call.finish_reason == "tool_calls"
    assert call.message.content is None
    assert call.message.tool_calls is not None
    args = json.loads(call.message.tool_calls[0].function.arguments)
    jsonschema.validate(args, WEATHER["function"]["parameters"])
    chunks = [oc.ChatCompletionChunk.model_validate(c) for c in result["chunks"]]
    last = chunks[-1].choices[0]
    assert last.finish_reason == "tool_calls"
    assert last.delta.tool_calls is not None
    assert last.delta.tool_calls[0].function is not None
    jsonschema.validate(
        json.loads(last.delta.tool_calls[0].function.arguments or ""), WEATHER["function"]["parameters"]
    )
    answer = oc.ChatCompletion.model_validate(result["answer"]).choices[0]
    assert answer.message.tool_calls is None
    assert answer.finish_reason in ("stop", "length")


# A Python user in Pyodide (a worker of their own, as a notebook kernel is): the engine of
# py_worker.CreateMLCEngine over the real kernels, every schema, then parse() with a dataclass.
PYTHON_USER_JS = python_user_worker("""
import dataclasses, json
from typing import Literal
import py_worker
args = json.loads(ARGS)
engine = await py_worker.CreateMLCEngine(args["model"])
ask = [{"role": "user", "content": "Describe one thing as JSON."}]
texts = {}
for seed, (name, schema) in enumerate(args["schemas"].items()):
    fmt = {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}
    reply = await engine.chat.completions.create(
        messages=ask, response_format=fmt, seed=seed, max_tokens=args["max_tokens"])
    texts[name] = [reply["choices"][0]["message"]["content"], reply["choices"][0]["finish_reason"]]

@dataclasses.dataclass
class Light:
    on: bool
    color: Literal["red", "green"]

parsed = await engine.chat.completions.parse(messages=ask, response_format=Light, seed=1, max_tokens=40)
light = parsed["choices"][0]["message"]["parsed"]
json.dumps({"texts": texts, "light": [type(light).__name__, dataclasses.asdict(light)]})
""")


@pytest.fixture(scope="module")
def python_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("app")
    (folder / "index.html").write_text("<!doctype html><script>window.appReady = true;</script>")
    (folder / "python-user.js").write_text(PYTHON_USER_JS)
    with CountingServer().serving(mounts={"/app/": folder}) as url:
        yield url


def test_every_schema_holds_in_python_in_pyodide(browser: Any, python_app: str) -> None:
    with app_page(browser, python_app) as page:
        args = {"model": TINY, "schemas": SCHEMAS, "max_tokens": MAX_TOKENS}
        out = ask_worker(page, "./python-user.js", args, 600_000)
    assert "ok" in out, out
    got = json.loads(out["ok"])
    for name, (text, finish) in got["texts"].items():
        assert finish == "stop", (name, text)
        jsonschema.validate(json.loads(text), SCHEMAS[name])
    kind, light = got["light"]
    assert kind == "Light"
    assert light["color"] in ("red", "green")
    assert isinstance(light["on"], bool)


SMOL_GGUF = "SmolLM2-135M-Instruct-Q4_1"


@pytest.mark.skipif(
    not (SITE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf").exists(), reason="site/ has no GGUF"
)
def test_every_schema_holds_on_smollm2_through_the_proxy(guarded: Guarded) -> None:
    """SmolLM2's GGUF, on llama.cpp here (SwiftShader is a software adapter), every schema."""
    guarded.open("bare.html")
    assert guarded.js(LOAD, SMOL_GGUF) == [SMOL_GGUF]
    names = list(SCHEMAS)
    answers = guarded.js(
        """async (requests) => {
          const out = [];
          for (const r of requests) out.push(await within(engine.chat.completions.create(r), 300000, "ask"));
          return out;
        }""",
        [{**schema_request(name, 0), "temperature": 0} for name in names],
    )
    for name, reply in zip(names, answers, strict=True):
        choice = oc.ChatCompletion.model_validate(reply).choices[0]
        assert choice.finish_reason == "stop", (name, choice)
        jsonschema.validate(json.loads(choice.message.content or ""), SCHEMAS[name])
