"""The SharedWorker host: tabs of one origin share one engine and one load of the
model, each sees only its own replies and streams, and a tab that leaves mid-stream frees the
model for the others."""

from __future__ import annotations

from typing import Any

import hosts
from conftest import TINY
from hosts import LONG, CountingServer, GuardedContext, request, result, stream, user

# Fast pings so a silent port is noticed within the test's time.
SHARED_URL = "shared-worker.js?pingMs=300&deadMs=2500"
REQ_A = request("Tell me a story about a tiny model.", 11)
REQ_B = request("What is the colour of the sea?", 5)


def open_engine(page: Any) -> list[str]:
    return hosts.open_engine(page, "shared", SHARED_URL, TINY)


def test_two_tabs_share_one_load_and_stream_together(
    tabs: GuardedContext, server: tuple[CountingServer, str]
) -> None:
    counting = server[0]
    a = tabs.page()
    assert open_engine(a) == [TINY]
    assert counting.shard_hits() == 1
    b = tabs.page()
    assert open_engine(b) == [TINY]
    assert counting.shard_hits() == 1  # the second tab did not load the model again
    assert not any(t.startswith("Start to fetch params") for t in b.evaluate("progress"))
    assert any("already loaded in the shared engine" in t for t in b.evaluate("progress"))

    # Each tab alone, one after the other: the reference outputs.
    stream(a, "refA", REQ_A)
    ref_a = result(a, "refA")
    stream(b, "refB", REQ_B)
    ref_b = result(b, "refB")
    assert ref_a["text"]
    assert ref_b["text"]
    assert ref_a["text"] != ref_b["text"]

    # Both at once: each gets exactly its own text.
    stream(a, "bothA", REQ_A)
    stream(b, "bothB", REQ_B)
    both_a, both_b = result(a, "bothA"), result(b, "bothB")
    assert both_a["text"] == ref_a["text"]  # (chunk counts follow timing-sized batches: not compared)
    assert both_b["text"] == ref_b["text"]
    assert both_a["finish"] == ref_a["finish"]
    assert both_b["finish"] == ref_b["finish"]

    # Stream ids are per tab, and a tab cannot reach another tab's stream.
    assert both_a["streamId"] == both_b["streamId"] == "stream-2"
    stream(a, "open", LONG, 0)
    a.wait_for_function("window.firstChunk && window.firstChunk.open === true", timeout=60000)
    refused = b.evaluate(
        """() => within(engine.sendRequest("completionStreamNextChunk", {streamId: "stream-3"})
              .then(() => "answered", (e) => e.name), 30000, "foreign pull")"""
    )
    assert refused == "StreamNotFoundError"
    a.evaluate("() => engine.interruptGenerate()")
    result(a, "open")
    assert a.evaluate("foreign") == []
    assert b.evaluate("foreign") == []
    assert counting.shard_hits() == 1


def test_tab_closed_mid_stream_frees_the_model(
    tabs: GuardedContext, server: tuple[CountingServer, str]
) -> None:
    a = tabs.page()
    b = tabs.page()
    open_engine(a)
    open_engine(b)
    stream(b, "ref", REQ_B)
    ref = result(b, "ref")

    stream(a, "long", LONG)
    a.wait_for_function("window.firstChunk && window.firstChunk.long === true", timeout=60000)
    stream(b, "queued", REQ_B)  # waits for the model, which the long stream holds
    a.close()
    after = result(b, "queued")
    assert after["text"] == ref["text"]
    assert after["finish"] in ("stop", "length")
    nxt = b.evaluate(
        """(messages) => within(engine.chat.completions.create({messages, max_tokens: 4, ignore_eos: true}),
                                60000, "next")""",
        user("And then?"),
    )
    assert nxt["usage"]["completion_tokens"] == 4
    assert server[0].shard_hits() == 1


def test_silent_port_is_dropped_by_heartbeat(tabs: GuardedContext) -> None:
    """A client that never says bye and stops answering pings (a crashed or frozen tab) has its
    stream returned: the other tab's queued request then runs."""
    a = tabs.page()
    open_engine(a)
    b = tabs.page()
    held = b.evaluate(
        """async ([url, request, model]) => {
          // A raw port that opens a stream, pulls one chunk and then ignores the host for ever.
          const port = new SharedWorker(url, {type: "module", name: "py-worker-shared"}).port;
          const replies = new Map();
          port.onmessage = (e) => {
            const answer = replies.get(e.data.uuid);
            if (answer && e.data.kind === "return") answer(e.data.content);
          };
          port.start();
          const ask = (kind, content) => new Promise((resolve) => {
            const uuid = crypto.randomUUID();
            replies.set(uuid, resolve);
            port.postMessage({kind, uuid, content});
          });
          const init = ask("chatCompletionStreamInit", {request, modelId: [model]});
          const {streamId} = await within(init, 60000, "init");
          const first = await within(ask("completionStreamNextChunk", {streamId}), 60000, "pull");
          window.silentPort = port;
          return {streamId, first: !!first.chunk};
        }""",
        [SHARED_URL, LONG, TINY],
    )
    assert held["first"]
    stream(a, "queued", REQ_A)
    got = result(a, "queued", 90000)
    assert got["finish"] in ("stop", "length")
    assert got["text"]
