"""Faults in the browser: a shard download that fails or is cut short, a worker killed mid-stream.

Each test routes the model's shard request (playwright) or terminates the worker, and checks what
the main thread sees: a named error within a deadline (never a hang), no partial bytes in the
browser cache, and a retry or the next request that works.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from conftest import SITE, TINY, TINY_GGUF, Guarded

SHARD = "params_shard_0.bin"
CACHE_NAME = "py_worker-wgsl"  # js_glue/kernels/loader.js
USER = [{"role": "user", "content": "Tell me about faults."}]

# Create an engine (no model), try a reload, report the error and what the browser cache holds.
TRY_RELOAD = """async ([model, cacheName]) => {
  window.engine = window.engine || await PyWorker.createEngine({});
  let error = null;
  try { await within(engine.reload(model), 120000, "reload"); } catch (e) { error = describeError(e); }
  const cache = await caches.open(cacheName);
  const cached = (await cache.keys()).map((r) => r.url);
  return {error, cached};
}"""
CHAT = """async (messages) => {
  const reply = await within(engine.chat.completions.create({messages, max_tokens: 4, ignore_eos: true}),
                             60000, "chat");
  return reply.usage.completion_tokens;
}"""


def shard_bytes() -> bytes:
    return (SITE / "models" / TINY / SHARD).read_bytes()


def route_shard(g: Guarded, handler: Callable[[Any], None]) -> dict[str, int]:
    """Route the tiny model's shard through ``handler`` while ``state["on"]``; count the hits."""
    state = {"on": 1, "hits": 0}

    def route(r: Any) -> None:
        if state["on"]:
            state["hits"] += 1
            handler(r)
        else:
            r.continue_()

    g.page.route(f"**/models/{TINY}/{SHARD}", route)  # later routes win over the guard's
    return state


def reload_fails_then_succeeds(g: Guarded, state: dict[str, int], error_name: str) -> dict[str, Any]:
    g.open("bare.html")
    first: dict[str, Any] = g.js(TRY_RELOAD, [TINY, CACHE_NAME])
    assert state["hits"] >= 1, "the fault was never injected"
    assert first["error"] is not None, "a broken shard loaded"
    assert first["error"]["name"] == error_name, first["error"]
    assert first["error"]["isPyWorkerError"], first["error"]
    assert SHARD in first["error"]["message"], first["error"]
    assert not [u for u in first["cached"] if u.endswith(SHARD)], "partial shard kept in the cache"
    state["on"] = 0
    second = g.js(TRY_RELOAD, [TINY, CACHE_NAME])
    assert second["error"] is None, second["error"]
    assert [u for u in second["cached"] if u.endswith(SHARD)], "the good shard was not cached"
    assert g.js(CHAT, USER) == 4
    return first


def test_shard_http_error_is_clear_not_cached_and_retry_loads(guarded: Guarded) -> None:
    state = route_shard(guarded, lambda r: r.fulfill(status=503, body="try later"))
    first = reload_fails_then_succeeds(guarded, state, "ArtifactFetchError")
    assert first["error"]["fields"].get("status") == 503


def test_shard_network_failure_is_clear_not_cached_and_retry_loads(guarded: Guarded) -> None:
    state = route_shard(guarded, lambda r: r.abort("connectionreset"))
    reload_fails_then_succeeds(guarded, state, "ArtifactFetchError")


def test_shard_cut_short_is_refused_not_cached_and_retry_loads(guarded: Guarded) -> None:
    """The body ends half way (a response whose length says so): the shard's sha256 differs."""
    half = shard_bytes()[: len(shard_bytes()) // 2]
    state = route_shard(
        guarded, lambda r: r.fulfill(status=200, body=half, content_type="application/octet-stream")
    )
    reload_fails_then_succeeds(guarded, state, "IntegrityError")


def test_shard_cut_short_without_digests_is_not_cached(guarded: Guarded) -> None:
    """As above, but tensor-cache.json carries no sha256 digests: only the size can tell."""
    index = json.loads((SITE / "models" / TINY / "tensor-cache.json").read_text())
    index.get("metadata", {}).pop("sha256", None)
    guarded.page.route(
        f"**/models/{TINY}/tensor-cache.json",
        lambda r: r.fulfill(status=200, body=json.dumps(index), content_type="application/json"),
    )
    half = shard_bytes()[: len(shard_bytes()) // 2]
    state = route_shard(
        guarded, lambda r: r.fulfill(status=200, body=half, content_type="application/octet-stream")
    )
    reload_fails_then_succeeds(guarded, state, "IntegrityError")


@pytest.mark.parametrize("model", [TINY, TINY_GGUF], ids=["wgsl", "wasm"])
def test_worker_killed_mid_stream_ends_the_stream_with_an_error_and_recovers(
    guarded: Guarded, model: str
) -> None:
    guarded.open("bare.html")
    result = guarded.js(
        """async ([model, messages]) => {
          window.engine = await within(PyWorker.CreateWebWorkerMLCEngine(model, {heartbeatTimeoutMs: 4000}),
                                       120000, "load");
          const request = {messages, stream: true, max_tokens: 400, ignore_eos: true};
          const stream = await within(engine.chat.completions.create(request), 60000, "init");
          let chunks = 0, error = null, finish = null;
          const read = (async () => {
            for await (const c of stream) {
              chunks += 1;
              if (c.choices.length && c.choices[0].finish_reason) finish = c.choices[0].finish_reason;
              if (chunks === 2) engine.worker.terminate();
            }
          })();
          try { await within(read, 60000, "stream after the worker died"); }
          catch (e) { error = describeError(e); }
          const again = {messages, max_tokens: 4, ignore_eos: true};
          const next = await within(engine.chat.completions.create(again), 120000, "next request");
          return {chunks, error, finish, restarts: engine.workerRestarts,
                  tokens: next.usage.completion_tokens};
        }""",
        [model, USER],
    )
    print(f"worker killed mid-stream: the stream ended with {result['error']}")
    assert result["error"] is not None, f"the stream ended quietly (finish {result['finish']})"
    assert not result["error"]["message"].startswith("timed out"), result["error"]  # a hang
    assert result["error"]["isPyWorkerError"], result["error"]
    assert result["finish"] is None
    assert result["chunks"] >= 2
    assert result["restarts"] == 1
    assert result["tokens"] == 4
