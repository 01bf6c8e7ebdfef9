"""What a hostile or careless page can send, on every host (the JS side of the reliability rules
in docs/CONTRACTS.md): each message
gets its own named reply and harms no other request, a worker that stops answering is not fed
the same request for ever, a request made during a reload waits for it, and a request in flight
when the browser stops the service worker is answered by the fresh instance.

Each test drives the proxy (proxy.js) and, where a host could see it, the same message raw
through the transport's postMessage. The engines run the tiny models; the tests assert only what
the code promises (names of errors, one reply, counts of sends), never timings or chunk counts.
"""

from __future__ import annotations

from typing import Any

import hosts
import pytest
from conftest import TINY, TINY_B, Guarded
from hosts import LONG, GuardedContext, user

HOST_URLS = {
    "worker": "worker.js",
    # Long deadlines: a loaded machine must not make the hosts drop a page that is only slow.
    "shared": "shared-worker.js?pingMs=500&deadMs=20000",
    "service": "service-worker.js?pingMs=500&deadMs=20000",
}
HOSTS = list(HOST_URLS)

# Page helpers: a raw request through any transport (a Worker or transport.js's endpoints) and
# the outcome of a promise as data.
HELPERS = """() => {
  window.rawAsk = (target, msg, ms) => new Promise((resolve) => {
    const timer = setTimeout(() => {
      target.removeEventListener("message", on);
      resolve({kind: "no reply"});
    }, ms);
    function on(e) {
      const m = e.data;
      if (m && m.uuid === msg.uuid && (m.kind === "return" || m.kind === "throw")) {
        clearTimeout(timer);
        target.removeEventListener("message", on);
        resolve(m);
      }
    }
    target.addEventListener("message", on);
    target.postMessage(msg);
  });
  window.raw = (msg, ms = 60000) =>
    rawAsk(engine.worker, {uuid: crypto.randomUUID(), content: {}, ...msg}, ms);
  window.replyName = (m) => m.kind === "throw" ? m.content.name : m.kind;
  const errorClass = () => (window.proxy || window.PyWorker).PyWorkerError;
  window.named = (p, ms, what) => within(p, ms, what).then(() => ({name: "no error"}), (e) => ({
    name: e && e.name, message: e && e.message, fields: e && e.fields,
    cause: e && e.cause ? e.cause.name : null, isPyWorkerError: e instanceof errorClass()}));
  window.requestsPending = () =>
    [...engine.pending.values()].filter((e) => e.kind !== "completionStreamNextChunk").length;
}"""

BUILTIN_KINDS = ["constructor", "toString", "hasOwnProperty", "__proto__", "valueOf", "isPrototypeOf"]

# Two models loaded; a stream open on model b while the hostile requests go to model a (or
# nowhere); then the stream must end normally and model b must be free for the next request.
HOSTILE = """async ([a, b, long, kinds]) => {
  await within(engine.reload([a, b]), 240000, "reload both");
  const init = engine.chat.completions.create({...long, model: b, stream: true});
  const stream = await within(init, 60000, "init");
  const it = stream[Symbol.asyncIterator]();
  const first = await within(it.next(), 60000, "first chunk");
  const messages = [{role: "user", content: "Hello?"}];
  const ask = (extra) => engine.chat.completions.create({messages, model: a, max_tokens: 2, ...extra});
  const out = {first: !first.done, proxy: [], raw: []}; // [kind, name] pairs: "__proto__" is a kind here
  for (const kind of kinds) {
    out.proxy.push([kind, (await named(engine.sendRequest(kind, {}), 60000, kind)).name]);
    out.raw.push([kind, replyName(await raw({kind}))]);
  }
  // Own fields named like built-in properties in a raw content: still exactly one reply.
  const odd = JSON.parse('{"constructor": 1, "__proto__": {"x": 1}, "toString": "y", "valueOf": null}');
  out.oddContent = (await raw({kind: "getGPUVendor", content: odd})).kind;
  // Values postMessage cannot clone: refused by the proxy, named, nothing left pending.
  out.fn = await named(ask({extra: () => 1}), 30000, "function");
  out.symbol = await named(ask({extra: Symbol("s")}), 30000, "symbol");
  // Nested past what the worker reads: refused before posting (the structured clone of ~1,600
  // levels arrives as null in Chromium; 20,000 levels throw RangeError at postMessage).
  const nested = (levels) => {
    let deep = {};
    const root = deep;
    for (let i = 0; i < levels; i++) { deep.next = {}; deep = deep.next; }
    return root;
  };
  out.deep = {};
  for (const levels of [70, 1600, 20000]) {
    out.deep[levels] = await named(ask({extra: nested(levels)}), 30000, "deep");
  }
  out.rawDeep = replyName(await raw({kind: "chatCompletionNonStreaming",
    content: {request: {messages, max_tokens: 2, extra: nested(70)}, modelId: [a, b]}}, 30000));
  out.nullChat = await named(engine.chat.completions.create(null), 30000, "create(null)");
  out.nullCompletion = await named(engine.completions.create(undefined), 30000, "completions.create()");
  out.nullEmbedding = await named(engine.embeddings.create(null), 30000, "embeddings.create(null)");
  // A 3 MiB user message: refused at once, by the proxy and by the host for a raw message.
  const huge = [{role: "user", content: "x ".repeat(3 << 19)}];
  out.huge = await named(ask({messages: huge}), 30000, "huge");
  out.rawHuge = replyName(await raw({kind: "chatCompletionNonStreaming",
    content: {request: {messages: huge, max_tokens: 2}, modelId: [a, b]}}, 30000));
  // The same uuid twice, raw: the second is refused, the first runs on (two replies in all).
  const dup = crypto.randomUUID();
  const dupReplies = [];
  const onDup = (e) => {
    const m = e.data;
    if (m && m.uuid === dup && (m.kind === "return" || m.kind === "throw")) dupReplies.push(replyName(m));
  };
  engine.worker.addEventListener("message", onDup);
  const twice = {kind: "chatCompletionNonStreaming", uuid: dup,
    content: {request: {messages, model: a, max_tokens: 8, ignore_eos: true}, modelId: [a, b]}};
  engine.worker.postMessage(twice);
  engine.worker.postMessage(twice);
  const until = performance.now() + 60000;
  while (dupReplies.length < 2 && performance.now() < until) await new Promise((r) => setTimeout(r, 50));
  engine.worker.removeEventListener("message", onDup);
  out.duplicate = dupReplies.sort();
  const beat = await raw({kind: "heartbeat"});
  out.heartbeat = {instance: typeof beat.content.instance, held: Array.isArray(beat.content.held)};
  out.leftPending = requestsPending();
  // The stream on model b goes on to its end, and model b is free afterwards.
  let finish = null, error = null;
  try {
    for (;;) {
      const r = await within(it.next(), 60000, "rest of the stream");
      if (r.done) break;
      const choice = r.value.choices[0];
      if (choice && choice.finish_reason) finish = choice.finish_reason;
    }
  } catch (e) { error = e.name + ": " + e.message; }
  out.stream = {finish, error};
  const onB = engine.chat.completions.create({messages, model: b, max_tokens: 3, ignore_eos: true});
  const next = await within(onB, 60000, "next on b");
  out.nextTokens = next.usage.completion_tokens;
  out.restarts = engine.workerRestarts;
  return out;
}"""


# The service transport before its worker is active: what cannot be posted throws at once (it
# used to be queued, fail when flushed and drop every message queued after it).
FRESH_SERVICE_TRANSPORT = """async (url) => {
  const t = connect("service", {url});
  const errors = [];
  t.addEventListener("error", (e) => errors.push(String(e.message)));
  let threw = null;
  try { t.postMessage({kind: "getGPUVendor", uuid: crypto.randomUUID(), content: {f: () => 1}}); }
  catch (e) { threw = e.name; }
  const beat = await rawAsk(t, {kind: "heartbeat", uuid: crypto.randomUUID(), content: {}}, 60000);
  return {threw, beat: beat.kind, errors}; // (not closed: its "bye" would speak for the whole page)
}"""


def open_host(tabs: GuardedContext, host: str) -> Any:
    page = tabs.page()
    assert hosts.open_engine(page, host, HOST_URLS[host], TINY) == [TINY]
    page.evaluate(HELPERS)
    return page


@pytest.mark.parametrize("host", HOSTS)
def test_hostile_messages_get_their_own_named_reply(tabs: GuardedContext, host: str) -> None:
    """Items 1, 2 (depth), 3, 4 (size), create(null) and duplicate uuids: kinds named like built-in
    object properties are unknown kinds; values that cannot be posted, nested too deep, oversize
    messages and a null request are refused with named errors; a raw request reusing the uuid of
    one in flight is refused while that one runs on; none of it harms a stream open on another
    model."""
    page = open_host(tabs, host)
    out = page.evaluate(HOSTILE, [TINY, TINY_B, LONG, BUILTIN_KINDS])
    assert out["first"]
    assert dict(out["proxy"]) == dict.fromkeys(BUILTIN_KINDS, "UnknownMessageKindError"), out["proxy"]
    assert dict(out["raw"]) == dict.fromkeys(BUILTIN_KINDS, "UnknownMessageKindError"), out["raw"]
    assert out["oddContent"] in ("return", "throw")
    for case, cause in (("fn", "DataCloneError"), ("symbol", "DataCloneError")):
        assert out[case]["name"] == "MalformedMessageError", (case, out[case])
        assert out[case]["isPyWorkerError"], out[case]
        assert out[case]["cause"] == cause, (case, out[case])
        assert out[case]["fields"]["reason"] == "unpostable", out[case]
    for levels, deep in out["deep"].items():
        assert deep["name"] == "MalformedMessageError", (levels, deep)
        assert deep["fields"] == {"reason": "depth", "limit": 64}, (levels, deep)
    assert out["rawDeep"] == "MalformedMessageError"
    for case in ("nullChat", "nullCompletion", "nullEmbedding"):
        assert out[case]["name"] == "InvalidRequestFieldError", (case, out[case])
        assert out[case]["fields"] == {"field": "request"}
    assert out["huge"]["name"] == "MessageTooLargeError", out["huge"]
    assert out["huge"]["fields"]["limit"] == 1 << 20
    assert out["rawHuge"] == "MessageTooLargeError"
    assert out["duplicate"] == ["DuplicateUuidError", "return"]
    assert out["heartbeat"] == {"instance": "string", "held": True}
    assert out["leftPending"] == 0
    assert out["stream"] == {"finish": "length", "error": None}
    assert out["nextTokens"] == 3
    assert out["restarts"] == 0
    if host == "service":
        fresh = page.evaluate(FRESH_SERVICE_TRANSPORT, HOST_URLS[host])
        assert fresh == {"threw": "DataCloneError", "beat": "return", "errors": []}


REQUEST_DURING_RELOAD = """async ([b, messages]) => {
  const reloading = engine.reload(b);
  const asked = engine.chat.completions.create({messages, max_tokens: 3, ignore_eos: true});
  const reload = await named(reloading, 240000, "reload");
  const reply = await within(asked, 120000, "request sent during the reload");
  const loaded = [...engine.modelId];
  const unloading = engine.unload();
  const duringUnload = engine.chat.completions.create({messages, max_tokens: 3});
  const afterUnload = await named(duringUnload, 60000, "during unload");
  const unload = await named(unloading, 60000, "unload");
  const stats = await named(engine.runtimeStatsText(), 60000, "stats after unload");
  return {reload: reload.name, model: reply.model, tokens: reply.usage.completion_tokens, loaded,
          afterUnload: afterUnload.name, unload: unload.name, stats: stats.name};
}"""


@pytest.mark.parametrize("host", HOSTS)
def test_request_during_reload_waits_for_it(tabs: GuardedContext, host: str) -> None:
    """Item 10: a request made while reload(B) runs is served by B once it is loaded (it no
    longer carries A's id, which made the worker load A again and interrupt the reload); one
    made during unload() finds no model instead of loading the old one back."""
    page = open_host(tabs, host)
    out = page.evaluate(REQUEST_DURING_RELOAD, [TINY_B, user("Hello?")])
    assert out["reload"] == "no error", out
    assert out["model"] == TINY_B
    assert out["loaded"] == [TINY_B]
    assert out["tokens"] == 3
    assert out["afterUnload"] == "ModelNotLoadedError"
    assert out["unload"] == "no error"
    assert out["stats"] == "ModelNotLoadedError"  # the unload was not undone


LOAD_DEDICATED = """async ([model, extra]) => {
  window.engine = await within(PyWorker.CreateWebWorkerMLCEngine(model, extra), 240000, "load");
}"""

UNPOSTABLE_THEN_REPLACED = """async (messages) => {
  const badRequest = engine.chat.completions.create({messages, max_tokens: 2, bad: () => 1});
  const bad = await named(badRequest, 30000, "bad");
  const config = engine.appConfig;
  const badConfig = await named(engine.setAppConfig({model_list: [], hook: () => 1}), 30000, "bad config");
  const keptConfig = engine.appConfig === config;
  const pendingAfterBad = engine.pending.size;
  // A good request in flight when its worker dies is sent again to the new worker; the bad
  // ones left nothing behind that could stop that.
  const good = engine.chat.completions.create({messages, max_tokens: 4, ignore_eos: true});
  engine.worker.terminate();
  const reply = await within(good, 240000, "good request after the replacement");
  return {bad, badConfig, keptConfig, pendingAfterBad, tokens: reply.usage.completion_tokens,
          restarts: engine.workerRestarts};
}"""


def test_unpostable_request_is_refused_and_never_blocks_the_others(guarded: Guarded) -> None:
    """Item 3 on the dedicated worker: a request postMessage cannot clone is refused with
    MalformedMessageError (cause DataCloneError) and leaves nothing pending, so a later worker
    replacement sends the other requests again."""
    guarded.open("bare.html")
    guarded.js(HELPERS)
    guarded.js(LOAD_DEDICATED, [TINY, {"heartbeatTimeoutMs": 4000}])
    out = guarded.js(UNPOSTABLE_THEN_REPLACED, user("Hello?"))
    assert out["bad"]["name"] == "MalformedMessageError", out
    assert out["bad"]["cause"] == "DataCloneError", out
    assert out["bad"]["isPyWorkerError"]
    assert out["badConfig"]["name"] == "MalformedMessageError"
    assert out["keptConfig"]
    assert out["pendingAfterBad"] == 0
    assert out["tokens"] == 4
    assert out["restarts"] == 1


# Workers wrapped so that the request marked `poison` silences the worker it reaches once that
# worker is ready, as a request whose synchronous work outlasts the heartbeat does.
POISONED = """async ([model, messages]) => {
  window.poisonPosts = 0;
  const wrap = (w) => {
    const t = {onmessage: null, onerror: null, ready: false, poisoned: false, silent: false};
    w.onmessage = (e) => {
      if (t.silent) return;
      if (e.data && e.data.kind === "workerReady") { t.ready = true; if (t.poisoned) t.silent = true; }
      if (t.onmessage) t.onmessage(e);
    };
    w.onerror = (e) => { if (t.onerror) t.onerror(e); };
    t.postMessage = (m) => {
      if (m && m.content && m.content.request && m.content.request.poison) {
        poisonPosts += 1;
        t.poisoned = true;
        if (t.ready) t.silent = true;
        return;
      }
      if (!t.silent) w.postMessage(m);
    };
    t.terminate = () => w.terminate();
    return t;
  };
  window.engine = await within(PyWorker.CreateWebWorkerMLCEngine(() => wrap(PyWorker.newWorker()), model,
    {heartbeatTimeoutMs: 4000}), 240000, "load");
  const poisoned = await named(engine.chat.completions.create({messages, max_tokens: 2, poison: true}),
                               300000, "the poisoned request");
  const next = await within(engine.chat.completions.create({messages, max_tokens: 3, ignore_eos: true}),
                            240000, "the next request");
  return {poisoned, poisonPosts, restarts: engine.workerRestarts, tokens: next.usage.completion_tokens};
}"""


def test_request_that_silences_every_worker_is_sent_again_only_once(guarded: Guarded) -> None:
    """Item 4: a request in flight when the worker stopped answering is sent to the new worker
    once; when that one stops answering too, the request is refused with
    WorkerUnresponsiveError (in_flight) instead of replacing workers for ever, and the engine
    serves the next request."""
    guarded.open("bare.html")
    guarded.js(HELPERS)
    out = guarded.js(POISONED, [TINY, user("Hello?")])
    assert out["poisoned"]["name"] == "WorkerUnresponsiveError", out
    assert out["poisoned"]["fields"]["in_flight"] is True
    assert out["poisonPosts"] == 2  # sent, then sent again once
    assert out["restarts"] == 2
    assert out["tokens"] == 3


IN_FLIGHT = """async (messages) => {
  window.inflight = engine.chat.completions.create({messages, max_tokens: 150, ignore_eos: true});
  inflight.catch(() => {});
  while (requestsPending() === 0) await new Promise((resolve) => setTimeout(resolve, 0)); // posted
  // Messages keep their order: once this is answered, the host holds the request.
  const beat = await raw({kind: "heartbeat"});
  return {instance: beat.content.instance, held: beat.content.held};
}"""

AFTER_STOP = """async () => {
  const kept = inflight.then((r) => { window.inflightReply = r; });
  const reply = await named(kept, 240000, "request in flight at the stop");
  const beat = await raw({kind: "heartbeat"});
  return {outcome: reply.name, tokens: window.inflightReply ? inflightReply.usage.completion_tokens : null,
          instance: beat.content.instance, hostRestarts: engine.hostRestarts};
}"""


def test_request_in_flight_when_the_service_worker_stops_is_answered(tabs: GuardedContext) -> None:
    """Item 11: the browser stops the service worker while a non-streaming request runs; the
    fresh instance answers heartbeats under a new instance id without holding the request, so
    the proxy sends it once more and it is answered (the fresh instance reloads the model)."""
    page = open_host(tabs, "service")
    before = page.evaluate(IN_FLIGHT, user("Count for ever."))
    cdp = page.context.new_cdp_session(page)
    cdp.send("ServiceWorker.enable")
    cdp.send("ServiceWorker.stopAllWorkers")
    after = page.evaluate(AFTER_STOP)
    assert after["outcome"] == "no error", after
    assert after["tokens"] == 150
    assert before["held"]
    assert len(before["held"]) == 1
    assert after["instance"] != before["instance"]  # the fresh instance does not pass for the old one
    assert after["hostRestarts"] == 1
