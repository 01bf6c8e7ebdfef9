"""The Service Worker host: pages of one origin share one engine, replies reach only
the page that asked, the engine survives the browser stopping the service worker with one
reload, and a message from another origin is not answered."""

from __future__ import annotations

from typing import Any

import hosts
from conftest import TINY
from hosts import LONG, CountingServer, GuardedContext, request, result, stream, user

SERVICE_URL = "service-worker.js?pingMs=500&deadMs=5000"
REQ_A = request("Tell me a story about a tiny model.", 11)
REQ_B = request("What is the colour of the sea?", 5)


def open_engine(page: Any) -> list[str]:
    return hosts.open_engine(page, "service", SERVICE_URL, TINY)


def loads(page: Any) -> int:
    return int(page.evaluate("progress.filter((t) => t.startsWith('Start to fetch params')).length"))


def test_two_pages_share_the_engine_and_see_only_their_replies(
    tabs: GuardedContext, server: tuple[CountingServer, str]
) -> None:
    counting = server[0]
    a = tabs.page()
    assert open_engine(a) == [TINY]
    b = tabs.page()
    assert open_engine(b) == [TINY]
    assert counting.shard_hits() == 1  # one load for both pages
    assert loads(a) == 1
    assert loads(b) == 0

    stream(a, "refA", REQ_A)
    ref_a = result(a, "refA")
    stream(b, "refB", REQ_B)
    ref_b = result(b, "refB")
    assert ref_a["text"]
    assert ref_a["text"] != ref_b["text"]

    stream(a, "bothA", REQ_A)
    stream(b, "bothB", REQ_B)
    assert result(a, "bothA")["text"] == ref_a["text"]
    assert result(b, "bothB")["text"] == ref_b["text"]

    # Closing a page mid-stream: its stream is returned and the other page's request runs.
    stream(a, "long", LONG)
    a.wait_for_function("window.firstChunk && window.firstChunk.long === true", timeout=60000)
    stream(b, "queued", REQ_B)
    a.close()
    assert result(b, "queued")["text"] == ref_b["text"]
    assert b.evaluate("foreign") == []
    assert counting.shard_hits() == 1


def test_survives_forced_stop_with_one_reload(
    tabs: GuardedContext, server: tuple[CountingServer, str]
) -> None:
    counting = server[0]
    page = tabs.page()
    open_engine(page)
    stream(page, "before", REQ_A)
    before = result(page, "before")
    assert counting.shard_hits() == 1

    started = page.evaluate("() => engine.sendRequest('hostTimeline')")["hostStart"]
    cdp = page.context.new_cdp_session(page)
    cdp.send("ServiceWorker.enable")
    cdp.send("ServiceWorker.stopAllWorkers")

    stream(page, "after", REQ_A)
    after = result(page, "after", 240000)
    assert after["text"] == before["text"]  # same seed, same answer from the fresh instance
    restarted = page.evaluate("() => engine.sendRequest('hostTimeline')")["hostStart"]
    assert restarted > started  # a fresh instance answered
    assert counting.shard_hits() == 2  # exactly one reload
    assert loads(page) == 2
    nxt = page.evaluate(
        """(messages) => within(engine.chat.completions.create({messages, max_tokens: 4, ignore_eos: true}),
                                60000, "next")""",
        user("And then?"),
    )
    assert nxt["usage"]["completion_tokens"] == 4
    assert counting.shard_hits() == 2  # the recovered state was remembered


CROSS_ORIGIN = """async ([origin, uuid]) => {
  const [client] = await clients.matchAll({includeUncontrolled: true, type: "window"});
  self.dispatchEvent(new ExtendableMessageEvent("message", {
    data: {kind: "getGPUVendor", uuid, content: {}}, origin, source: client}));
  return client.id;
}"""


def test_message_from_another_origin_is_not_answered(tabs: GuardedContext) -> None:
    page = tabs.page()
    open_engine(page)
    page.evaluate(
        """() => {
          window.seenUuids = [];
          navigator.serviceWorker.addEventListener("message", (e) => seenUuids.push(e.data && e.data.uuid));
        }"""
    )
    (worker,) = tabs.context.service_workers
    own_origin = tabs.base_url.rstrip("/")
    worker.evaluate(CROSS_ORIGIN, ["http://127.0.0.1:1", "from-elsewhere"])
    worker.evaluate(CROSS_ORIGIN, [own_origin, "from-here"])
    page.wait_for_function("seenUuids.includes('from-here')", timeout=30000)
    page.wait_for_timeout(500)
    assert "from-elsewhere" not in page.evaluate("seenUuids")
