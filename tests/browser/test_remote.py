"""Remote models through the proxy: a page's app config names a real OpenAI-compatible server
(llama-cpp-python's, serving the SmolLM2 GGUF on 127.0.0.1), and the worker's engine routes to it
beside a local model. What must hold: the same OpenAI shapes as a local model's, streamed and
not; an interrupt or a stream left early aborts the HTTP request (the server says so in its log);
a server that is down or silent gives a named error and nothing hangs; a request cannot change
where it goes; no credential appears in an error."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY, Guarded

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests import llama_server as ls

REMOTE = "smollm2-remote"
EMBED = "smollm2-remote-embed"


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ls.LlamaServer]:
    with ls.started(tmp_path_factory.mktemp("llama")) as server:
        yield server


LOAD = """async ([models, records, tiny]) => {
  const local = {model_id: tiny, model: new URL(`/models/${tiny}/`, location.href).href, cache: "none"};
  const appConfig = {model_list: [local, ...records]};
  window.engine = await within(PyWorker.CreateWebWorkerMLCEngine(models, {appConfig}), 120000, "load");
  return engine.modelId;
}"""


def load(g: Guarded, models: list[str], records: list[dict[str, Any]]) -> None:
    g.open("bare.html")
    assert g.js(LOAD, [models, records, TINY]) == models


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def test_chat_streamed_and_not_and_completions(guarded: Guarded, llama: ls.LlamaServer) -> None:
    load(guarded, [REMOTE], [ls.record(REMOTE, llama.url)])
    got = guarded.js(
        """async ([messages, greedy]) => {
          const request = {messages, max_tokens: 24, ...greedy};
          const chunks = [];
          const init = engine.chat.completions.create({...request, stream: true});
          const stream = await within(init, 60000, "init");
          for await (const c of stream) chunks.push(c);
          const whole = await within(engine.chat.completions.create(request), 60000, "chat");
          const completion = await within(engine.completions.create(
            {prompt: "The capital of France is", max_tokens: 8, ...greedy}), 60000, "completion");
          const cchunks = [];
          const cstream = await within(engine.completions.create(
            {prompt: "The capital of France is", max_tokens: 8, stream: true, ...greedy}), 60000, "cinit");
          for await (const c of cstream) cchunks.push(c);
          return {chunks, whole, completion, cchunks};
        }""",
        [ls.USER, ls.GREEDY],
    )
    from openai.types import Completion
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    whole = ChatCompletion.model_validate(got["whole"])
    assert whole.model == REMOTE
    assert whole.choices[0].finish_reason in ("stop", "length")
    assert whole.usage is not None
    assert whole.usage.completion_tokens > 0  # the server's usage, passed on
    chunks = [ChatCompletionChunk.model_validate(c) for c in got["chunks"]]
    assert {c.model for c in chunks} == {REMOTE}
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    # Temperature 0 and one seed: the stream is the same answer as the non-streamed one.
    assert text_of(got["chunks"]) == whole.choices[0].message.content
    completion = Completion.model_validate(got["completion"])
    assert completion.model == REMOTE
    assert completion.object == "text_completion"
    streamed = "".join(c["choices"][0]["text"] for c in got["cchunks"] if c["choices"])
    assert streamed == completion.choices[0].text


def test_interrupt_and_early_break_abort_the_server(guarded: Guarded, llama: ls.LlamaServer) -> None:
    load(guarded, [REMOTE], [ls.record(REMOTE, llama.url)])
    before = llama.disconnects()
    got = guarded.js(
        """async ([messages, long]) => {
          const ask = (request) => within(engine.chat.completions.create(request), 60000, "ask");
          const stream = await ask({messages, stream: true, ...long});
          let n = 0, finish = null;
          for await (const c of stream) {
            n += 1;
            if (n === 3) await engine.interruptGenerate();
            if (c.choices.length && c.choices[0].finish_reason) finish = c.choices[0].finish_reason;
          }
          const again = await ask({messages, stream: true, ...long});
          let m = 0;
          for await (const c of again) { m += 1; if (m === 3) break; }
          const next = await ask({messages, max_tokens: 4, temperature: 0});
          return {finish, n, next};
        }""",
        [ls.USER, ls.LONG],
    )
    assert got["finish"] == "abort"
    assert got["next"]["choices"][0]["finish_reason"] == "length"
    # The server itself logs each stream it stopped because its client left: both of ours.
    assert llama.disconnects() - before == 2


def test_server_down_or_silent_is_a_named_error(guarded: Guarded) -> None:
    with ls.silent_server() as silent:
        records = [
            ls.record("down", ls.down_url()),
            ls.record("silent", silent, timeout_ms=1500),
        ]
        load(guarded, ["down", "silent"], records)
        got = guarded.js(
            """async (messages) => {
              const outcome = async (model, stream) => {
                try {
                  const r = await engine.chat.completions.create({model, messages, stream, max_tokens: 4});
                  if (stream) for await (const c of r) { /* the error comes with the first pull */ }
                  return null;
                } catch (e) { return {...describeError(e), isClass: e instanceof PyWorker[e.name]}; }
              };
              return {
                down: await within(outcome("down", false), 60000, "down"),
                downStream: await within(outcome("down", true), 60000, "down stream"),
                silent: await within(outcome("silent", false), 60000, "silent"),
                silentStream: await within(outcome("silent", true), 60000, "silent stream"),
              };
            }""",
            ls.USER,
        )
    for case in ("down", "downStream"):
        assert got[case]["name"] == "RemoteConnectionError", got[case]
    for case in ("silent", "silentStream"):
        assert got[case]["name"] == "RemoteTimeoutError", got[case]
        assert got[case]["fields"]["timeout_ms"] == 1500
    for err in got.values():
        assert err["isClass"]
        assert err["isPyWorkerError"]
        assert ls.SECRET not in str(err)


def test_server_error_and_refused_fields(guarded: Guarded, llama: ls.LlamaServer) -> None:
    records = [ls.record(REMOTE, llama.url), ls.record("no-embed", llama.url, model_type="embedding")]
    load(guarded, [REMOTE, "no-embed"], records)
    got = guarded.js(
        """async ([messages, remote]) => {
          const caught = (p) => within(p.then(() => null, describeError), 60000, "caught");
          const chat = (extra) => caught(engine.chat.completions.create({model: remote, messages, ...extra}));
          const grammar = {type: "grammar", grammar: "root ::= \\"a\\""};
          return {
            // An LLM record: refused before anything is sent.
            pipeline: await caught(engine.embeddings.create({model: remote, input: "a cat"})),
            // This server serves no embeddings unless started for them: its HTTP 500, named.
            server: await caught(engine.embeddings.create({model: "no-embed", input: "a cat"})),
            routed: await chat({max_tokens: 2, base_url: "http://127.0.0.1:9/v1", headers: {x: "y"}}),
            grammar: await chat({max_tokens: 2, response_format: grammar}),
            invalid: await chat({temperature: -1}),
          };
        }""",
        [ls.USER, REMOTE],
    )
    assert got["pipeline"]["name"] == "EmbeddingUnsupportedModelError"
    assert got["server"]["name"] == "RemoteServerError"
    assert got["server"]["fields"]["status"] == 500
    assert "embedding=True" in got["server"]["fields"]["server_message"]
    assert ls.SECRET not in str(got)
    assert got["routed"]["name"] == "UnsupportedFieldsError"
    assert got["routed"]["fields"]["fields_found"] == ["base_url", "headers"]
    assert got["grammar"]["fields"]["fields_found"] == ["response_format"]
    assert got["invalid"]["name"] == "TemperatureError"  # the local checks, before anything is sent


def test_embeddings_from_a_server_started_for_them(guarded: Guarded, tmp_path: Path) -> None:
    """llama-cpp-python's server has no pooling option, and SmolLM2 (a causal LM) does not pool:
    it answers one vector per token, which is not OpenAI's shape. The request reaches the server
    and its reply is refused with a named error instead of being passed on malformed."""
    python = ls.llama_python()
    if python is None:
        pytest.skip("llama_cpp.server is not importable")
    server = ls.LlamaServer(python, tmp_path / "embed.log", "--embedding", "true")
    try:
        load(guarded, [EMBED], [ls.record(EMBED, server.url, model_type="embedding")])
        got = guarded.js(
            """async () => {
              try { await within(engine.embeddings.create({input: ["a cat", "a kitten"]}), 60000, "embed"); }
              catch (e) { return describeError(e); }
            }"""
        )
        served = server.log.read_text().count('"POST /v1/embeddings HTTP/1.1" 200')
    finally:
        server.close()
    assert got["name"] == "RemoteProtocolError"
    assert "one per token" in got["fields"]["reason"]
    assert served == 1


def test_local_and_remote_stream_at_once(guarded: Guarded, llama: ls.LlamaServer) -> None:
    load(guarded, [TINY, REMOTE], [ls.record(REMOTE, llama.url)])
    got = guarded.js(
        """async ([messages, greedy, tiny, remote]) => {
          const open = (model, extra) => within(engine.chat.completions.create(
            {model, messages, stream: true, max_tokens: 24, ...extra}), 60000, model);
          const local = await open(tiny, {ignore_eos: true, seed: 3});
          const far = await open(remote, greedy);
          const pull = async (it, n) => {
            const out = [];
            while (out.length < n) {
              const {done, value} = await within(it.next(), 60000, "pull");
              if (done) break;
              out.push(value);
            }
            return out;
          };
          const li = local[Symbol.asyncIterator](), ri = far[Symbol.asyncIterator]();
          // The local stream is open and holds its model while the remote one runs to its end.
          const head = await pull(li, 2);
          const remoteChunks = await pull(ri, 1000);
          const rest = await pull(li, 1000);
          // And both at once, as two readers would.
          const [a, b] = await Promise.all([open(tiny, {ignore_eos: true}), open(remote, greedy)]);
          const all = (s) => pull(s[Symbol.asyncIterator](), 1000);
          const [la, rb] = await Promise.all([all(a), all(b)]);
          return {local: [...head, ...rest], far: remoteChunks, la, rb};
        }""",
        [ls.USER, ls.GREEDY, TINY, REMOTE],
    )
    for key, model in (("local", TINY), ("far", REMOTE), ("la", TINY), ("rb", REMOTE)):
        assert {c["model"] for c in got[key]} == {model}, key
        assert got[key][-1]["choices"][0]["finish_reason"] in ("stop", "length"), key
    assert got["local"][-1]["choices"][0]["finish_reason"] == "length"
    assert text_of(got["far"]) == text_of(got["rb"])  # temperature 0, one seed: the same answer
