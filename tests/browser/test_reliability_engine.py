"""The reliability rules of the Python side (docs/CONTRACTS.md), in Chromium: the engine inside
the worker keeps its promises through
the proxy and for raw ``postMessage``, on the dedicated and the SharedWorker host (both hand
messages to the same Python entry, py_worker.worker_main).

- messages no JSON can hold (cycles, nesting thousands deep) get one named ``throw``; a request
  with its own ``constructor`` field is served; out-of-vocabulary ``logit_bias`` ids are refused;
- the end of an answer is never lost: with one seed, the answer with max_tokens k is a prefix of
  the answer with k + 1, streamed or not;
- ``interruptGenerate()`` sent right after a request, before its generation began, ends it with
  "abort", and the next turn then equals a fresh prefill's;
- ``reload()`` / ``unload()`` end every open stream with its final chunk ("abort");
- a call that needs the model, made inside ``for await`` over that model's stream, is served and
  the stream then goes on to its end.

Tiny models; assertions only on what the code promises (names, reasons, finish reasons of greedy
or seeded requests, equal texts), never on timings or chunk counts. Deadlines only guard hangs.
"""

from __future__ import annotations

from typing import Any

import hosts
import pytest
from conftest import TINY, TINY_B, TINY_GGUF
from hosts import GuardedContext, user

HOST_URLS = {
    "worker": "worker.js",
    "shared": "shared-worker.js?pingMs=500&deadMs=20000",
}
PYTHON_HOSTS = list(HOST_URLS)

HELPERS = """() => {
  window.rawAsk = (partial, ms = 60000) => new Promise((resolve) => {
    const target = engine.worker;
    const msg = {uuid: crypto.randomUUID(), content: {}, ...partial};
    const timer = setTimeout(() => {
      target.removeEventListener("message", on);
      resolve({kind: "no reply"});
    }, ms);
    function on(e) {
      const m = e.data;
      if (m && m.uuid === msg.uuid && (m.kind === "return" || m.kind === "throw")) {
        clearTimeout(timer);
        target.removeEventListener("message", on);
        resolve({kind: m.kind, name: m.kind === "throw" ? m.content.name : null,
                 fields: m.kind === "throw" ? m.content.fields : null});
      }
    }
    target.addEventListener("message", on);
    target.postMessage(msg);
  });
  window.named = (p, ms, what) => within(p, ms, what).then((v) => ({name: "no error", value: v}), (e) => ({
    name: e && e.name, message: e && e.message, fields: e && e.fields,
    isClass: !!(e && proxy[e.name] && e instanceof proxy[e.name])}));
  window.cyclic = () => {
    const request = {messages: [{role: "user", content: "Hi"}], max_tokens: 2};
    request.self = request;
    return request;
  };
  window.nested = (depth) => {
    let v = "leaf";
    for (let i = 0; i < depth; i++) v = {a: [v]};
    return v;
  };
  // Posts interruptGenerate right after the next message of `kind` leaves for the worker (the
  // proxy may post a request a few microtasks after its call), so it arrives just behind it.
  window.interruptRightAfter = (kind) => new Promise((resolve, reject) => {
    const w = engine.worker;
    const own = Object.prototype.hasOwnProperty.call(w, "postMessage");
    const real = w.postMessage;
    w.postMessage = function (m) {
      real.call(w, m);
      if (m && m.kind === kind) {
        if (own) w.postMessage = real; else delete w.postMessage;
        engine.interruptGenerate().then(resolve, reject);
      }
    };
  });
  window.textOf = (chunks) =>
    chunks.map((c) => (c.choices.length ? c.choices[0].delta.content || "" : "")).join("");
  window.finishOf = (chunks) => {
    let f = null;
    for (const c of chunks) f = (c.choices.length && c.choices[0].finish_reason) || f;
    return f;
  };
  window.ask = (request, what = "request") => within(engine.chat.completions.create(request), 60000, what);
  window.askStream = (request, what = "init") =>
    within(engine.chat.completions.create({...request, stream: true}), 60000, what);
  window.readAll = async (stream, ms = 120000) => {
    const chunks = [];
    const it = stream[Symbol.asyncIterator]();
    for (;;) {
      const r = await within(it.next(), ms, "stream");
      if (r.done) return chunks;
      chunks.push(r.value);
    }
  };
}"""

GREEDY = {"temperature": 0, "ignore_eos": True}


def open_host(tabs: GuardedContext, host: str, model: str = TINY) -> Any:
    page = tabs.page()
    assert hosts.open_engine(page, host, HOST_URLS[host], model) == [model]
    page.evaluate(HELPERS)
    return page


UNREADABLE = """async ([long, modelId]) => {
  const stream = await askStream(long);
  const it = stream[Symbol.asyncIterator]();
  const first = await within(it.next(), 60000, "first chunk");
  const out = {first: !first.done};
  const chat = (request) => ({kind: "chatCompletionNonStreaming", content: {request, modelId}});
  out.rawCycle = await rawAsk(chat(cyclic()));
  const top = {kind: "getGPUVendor", content: {}};
  top.content.back = top;
  out.rawTopCycle = await rawAsk(top);
  // 1,000 levels (Chromium delivers a message some 2,000 levels deep to the worker as null).
  out.rawDeep = await rawAsk({kind: "getMessage", content: {x: nested(500)}});
  out.rawDeepRequest = await rawAsk(chat({messages: nested(400), max_tokens: 2}));
  const send = (kind, content) => named(engine.sendRequest(kind, content), 60000, kind);
  out.proxyCycle = await send("chatCompletionNonStreaming", {request: cyclic(), modelId});
  out.proxyDeep = await send("getMessage", {x: nested(500)});
  const messages = [{role: "user", content: "Hello?"}];
  const own = {messages, max_tokens: 2, constructor: "mine", toString: "x", hasOwnProperty: 1};
  out.ownFields = await named(engine.chat.completions.create(own), 60000, "own constructor field");
  out.rawOwnFields = await rawAsk(chat(own));
  const outside = {messages, max_tokens: 2, logit_bias: {"100000": 5}};
  const bias = await named(engine.chat.completions.create(outside), 60000, "logit_bias");
  out.bias = {name: bias.name, fields: bias.fields, isClass: bias.isClass};
  const outsideStream = {messages, stream: true, logit_bias: {"5000": 1}};
  const biasStream = await named(engine.chat.completions.create(outsideStream), 60000, "logit_bias stream");
  out.biasStream = biasStream.name;
  const rest = [];
  for (;;) {
    const r = await within(it.next(), 60000, "rest of the stream");
    if (r.done) break;
    rest.push(r.value);
  }
  out.finish = finishOf([first.value, ...rest]);
  const next = await ask({messages, max_tokens: 3, temperature: 0, ignore_eos: true}, "next");
  out.nextTokens = next.usage.completion_tokens;
  return out;
}"""


@pytest.mark.parametrize("host", PYTHON_HOSTS)
def test_unreadable_messages_and_odd_fields_get_named_replies(tabs: GuardedContext, host: str) -> None:
    """Item 2, the constructor field and logit_bias: cyclic and deeply nested messages, raw and
    through the proxy, get MalformedMessageError with their reason, and harm no open stream."""
    page = open_host(tabs, host)
    long = {"messages": user("Count for ever."), "max_tokens": 40, **GREEDY}
    out = page.evaluate(UNREADABLE, [long, [TINY]])
    assert out["first"]
    for case, reason in (("rawCycle", "cycle"), ("rawTopCycle", "cycle"), ("rawDeep", "depth"),
                         ("rawDeepRequest", "depth")):  # fmt: skip
        assert out[case]["kind"] == "throw", (case, out[case])
        assert out[case]["name"] == "MalformedMessageError", (case, out[case])
        assert out[case]["fields"]["reason"] == reason, (case, out[case])
    for case, reason in (("proxyCycle", "cycle"), ("proxyDeep", "depth")):
        assert out[case]["name"] == "MalformedMessageError", (case, out[case])
        assert out[case]["isClass"], (case, out[case])
        assert out[case]["fields"]["reason"] == reason, (case, out[case])
    assert out["ownFields"]["name"] == "no error", out["ownFields"]
    assert out["ownFields"]["value"]["choices"][0]["finish_reason"] in ("stop", "length")
    assert out["rawOwnFields"]["kind"] == "return", out["rawOwnFields"]
    assert out["bias"]["name"] == "InvalidRequestFieldError", out["bias"]
    assert out["bias"]["isClass"], out["bias"]
    assert out["bias"]["fields"]["field"] == "logit_bias"
    assert out["biasStream"] == "InvalidRequestFieldError"
    assert out["finish"] == "length"
    assert out["nextTokens"] == 3


PREFIXES = """async ([messages, bias, n]) => {
  const base = {messages, seed: 17, temperature: 1.0, ignore_eos: true, logit_bias: bias};
  const whole = [], streamed = [], tokens = [];
  for (let k = 1; k <= n; k++) {
    const reply = await ask({...base, max_tokens: k}, `k=${k}`);
    whole.push(reply.choices[0].message.content);
    tokens.push(reply.usage.completion_tokens);
    const stream = await askStream({...base, max_tokens: k});
    streamed.push(textOf(await readAll(stream)));
  }
  return {whole, streamed, tokens};
}"""


def test_answer_with_max_tokens_k_is_a_prefix_of_k_plus_1(tabs: GuardedContext) -> None:
    """Item 5: the tiny byte-level model, biased to ``a b c`` and the two bytes of ``é``, cuts
    multi-byte characters everywhere; no decoded text is lost at the end of an answer."""
    page = open_host(tabs, "worker")
    alphabet = {*b"abc", 0xC3, 0xA9}
    bias = {str(i): -100 for i in range(512) if i not in alphabet}
    n = 24
    out = page.evaluate(PREFIXES, [user("Hi there"), bias, n])
    assert out["tokens"] == list(range(1, n + 1))
    assert out["streamed"] == out["whole"]
    for k in range(1, n):
        assert out["whole"][k].startswith(out["whole"][k - 1]), (k, out["whole"][k - 1], out["whole"][k])
    assert "é" in out["whole"][-1], out["whole"][-1]


INTERRUPT = """async ([messages, turn2]) => {
  const greedy = {temperature: 0, ignore_eos: true};
  const out = {};
  // Non-streaming: the interrupt is posted right after the request, before its generation began.
  const interrupted = interruptRightAfter("chatCompletionNonStreaming");
  const asked = engine.chat.completions.create({messages, max_tokens: 60, ...greedy});
  await within(interrupted, 60000, "interrupt");
  const reply = await within(asked, 60000, "interrupted request");
  out.plain = {finish: reply.choices[0].finish_reason, tokens: reply.usage.completion_tokens,
               text: reply.choices[0].message.content};
  // The next turn (the aborted answer as the assistant's) equals a fresh prefill of the same turn.
  const history = [...messages, {role: "assistant", content: out.plain.text}, ...turn2];
  const next = await ask({messages: history, max_tokens: 12, ...greedy}, "next");
  await within(engine.resetChat(), 60000, "reset");
  const fresh = await ask({messages: history, max_tokens: 12, ...greedy}, "fresh");
  out.next = {text: next.choices[0].message.content, prompt: next.usage.prompt_tokens};
  out.fresh = {text: fresh.choices[0].message.content, prompt: fresh.usage.prompt_tokens};
  // A stream: interrupted with its first pull in flight, and before its first pull.
  const s1 = await askStream({messages, max_tokens: 60, ...greedy});
  const it = s1[Symbol.asyncIterator]();
  const pulled = interruptRightAfter("completionStreamNextChunk");
  const firstPull = it.next();
  await within(pulled, 60000, "interrupt");
  const chunks1 = [];
  for (let r = await within(firstPull, 60000, "pull"); !r.done; r = await within(it.next(), 60000, "pull")) {
    chunks1.push(r.value);
  }
  out.withPull = {finish: finishOf(chunks1), length: textOf(chunks1).length};
  const s2 = await askStream({messages, max_tokens: 60, ...greedy});
  await within(engine.interruptGenerate(), 60000, "interrupt");
  const chunks2 = await readAll(s2);
  out.beforePull = {finish: finishOf(chunks2), text: textOf(chunks2)};
  const after = await ask({messages, max_tokens: 5, ...greedy}, "after");
  out.after = {finish: after.choices[0].finish_reason, tokens: after.usage.completion_tokens};
  return out;
}"""


@pytest.mark.parametrize("model", [TINY, TINY_GGUF], ids=["wgsl", "wasm"])
def test_interrupt_before_generation_began_ends_the_request(tabs: GuardedContext, model: str) -> None:
    """Items 6 and 7: the interrupt reaches a request from the moment it was accepted, and the
    aborted turn leaves nothing cached that the next turn would wrongly reuse."""
    page = open_host(tabs, "worker", model)
    messages = user("Tell me a long story about a tiny model that learns to count, from the start. " * 2)
    out = page.evaluate(INTERRUPT, [messages, user("Go on.")])
    assert out["plain"]["finish"] == "abort", out["plain"]
    assert out["plain"]["tokens"] < 60
    assert out["next"] == out["fresh"]  # the whole prompt prefilled again: the same greedy answer
    assert out["withPull"]["finish"] == "abort", out["withPull"]
    assert out["withPull"]["length"] < 60, out["withPull"]
    assert out["beforePull"] == {"finish": "abort", "text": ""}
    assert out["after"] == {"finish": "length", "tokens": 5}


RELOAD_WHILE_STREAMING = """async ([model, messages, what]) => {
  const greedy = {temperature: 0, ignore_eos: true};
  const reading = await askStream({messages, max_tokens: 200, ...greedy});
  const it = reading[Symbol.asyncIterator]();
  const first = await within(it.next(), 60000, "first chunk");
  const unread = await askStream({messages, max_tokens: 200, ...greedy});
  const change = what === "unload" ? engine.unload() : engine.reload(model);
  const changed = await named(change, 120000, what);
  const rest = [];
  for (;;) {
    const r = await within(it.next(), 60000, "rest after " + what);
    if (r.done) break;
    rest.push(r.value);
  }
  const unreadChunks = await readAll(unread, 60000);
  const out = {changed: changed.name, reading: finishOf([first.value, ...rest]),
               unread: {finish: finishOf(unreadChunks), text: textOf(unreadChunks)}};
  if (what === "reload") {
    const next = await ask({messages, max_tokens: 3, ...greedy}, "next");
    out.next = next.choices[0].finish_reason;
  }
  return out;
}"""


@pytest.mark.parametrize("host", PYTHON_HOSTS)
@pytest.mark.parametrize("what", ["unload", "reload"])
def test_reload_or_unload_ends_open_streams_with_a_final_chunk(
    tabs: GuardedContext, host: str, what: str
) -> None:
    """Item 8: each open stream, read or not yet read, ends with finish_reason "abort"."""
    page = open_host(tabs, host)
    # Another model: the shared host answers a reload of what it holds without reloading.
    out = page.evaluate(RELOAD_WHILE_STREAMING, [TINY_B, user("Count for ever."), what])
    assert out["changed"] == "no error", out
    assert out["reading"] == "abort", out
    assert out["unread"] == {"finish": "abort", "text": ""}, out
    if what == "reload":
        assert out["next"] == "length"


INSIDE_FOR_AWAIT = """async ([messages]) => {
  const greedy = {temperature: 0, ignore_eos: true};
  const request = {messages, max_tokens: 30, ...greedy};
  const alone = await ask(request, "alone");
  const out = {inner: {}};
  const stream = await askStream(request);
  const chunks = [];
  for await (const chunk of stream) {
    chunks.push(chunk);
    if (chunks.length !== 1) continue;
    // What a page does inside its loop; each needs the model the stream holds.
    const short = {messages, max_tokens: 2, ...greedy};
    out.inner.chat = (await named(engine.chat.completions.create(short), 60000, "chat")).name;
    out.inner.forward = (await named(engine.forwardTokensAndSample([72, 105], true), 60000, "forward")).name;
    const nested = await askStream(short, "nested init");
    out.inner.nested = finishOf(await readAll(nested, 60000));
    out.inner.reset = (await named(engine.resetChat(), 60000, "resetChat")).name;
  }
  out.finish = finishOf(chunks);
  out.same = textOf(chunks) === alone.choices[0].message.content;
  return out;
}"""


@pytest.mark.parametrize(
    ("host", "model"),
    [*((host, TINY) for host in PYTHON_HOSTS), ("worker", TINY_GGUF)],
    ids=[*PYTHON_HOSTS, "worker-wasm"],
)
def test_call_inside_for_await_over_the_same_model_is_served(
    tabs: GuardedContext, host: str, model: str
) -> None:
    """Item 9: no deadlock; the stream loses nothing (on llama.cpp too: one model, two callers)."""
    page = open_host(tabs, host, model)
    out = page.evaluate(INSIDE_FOR_AWAIT, [user("Hi there")])
    served = {"chat": "no error", "forward": "no error", "nested": "length", "reset": "no error"}
    assert out["inner"] == served, out
    assert out["finish"] == "length"
    assert out["same"], out
