"""The worker message handler: one terminal reply per request, typed errors, streams, recovery."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from py_worker.engine import MLCEngine
from py_worker.errors import StreamNotFoundError, UnclearModelToUseError, error_from_dict
from py_worker.handler import Handler
from py_worker.reference import ReferenceKernels

HI = [{"role": "user", "content": "Hi"}]
CHAT = {"messages": HI, "max_tokens": 4, "ignore_eos": True, "temperature": 0}


class Client:
    """Sends messages to a handler and collects replies by uuid, like the JS proxy."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.replies: list[dict[str, Any]] = []
        self.count = 0

    def post(self, reply: dict[str, Any]) -> None:
        self.replies.append(reply)

    def terminal(self, uuid: str) -> list[dict[str, Any]]:
        return [r for r in self.replies if r["uuid"] == uuid and r["kind"] in ("return", "throw")]

    async def send(self, kind: str, content: Any = None) -> dict[str, Any]:
        self.count += 1
        uuid = f"u{self.count}"
        await self.handler.handle({"kind": kind, "uuid": uuid, "content": content}, self.post)
        replies = self.terminal(uuid)
        assert len(replies) == 1, replies
        return replies[0]


def make(app_config: dict[str, Any]) -> tuple[Handler, Client, ReferenceKernels]:
    kernels = ReferenceKernels()
    handler = Handler(MLCEngine(kernels, app_config))
    return handler, Client(handler), kernels


def test_unknown_and_malformed_messages_get_a_throw(app_config: dict[str, Any]) -> None:
    async def main() -> None:
        handler, client, _ = make(app_config)
        reply = await client.send("noSuchKind", {})
        assert reply["kind"] == "throw"
        assert reply["content"]["name"] == "UnknownMessageKindError"
        reply = await client.send("getMessage", "not an object")
        assert reply["content"]["name"] == "MalformedMessageError"
        posted: list[dict[str, Any]] = []
        await handler.handle(["not", "a", "dict"], posted.append)
        assert posted[0]["kind"] == "throw"
        assert posted[0]["uuid"] is None

    asyncio.run(main())


def test_errors_cross_with_their_class_and_fields(app_config: dict[str, Any]) -> None:
    async def main() -> None:
        _, client, _ = make(app_config)
        assert (await client.send("reload", {"modelId": ["tiny-a", "tiny-b"]}))["kind"] == "return"
        reply = await client.send("chatCompletionNonStreaming", {"request": {"messages": HI}})
        err = error_from_dict(reply["content"])
        assert isinstance(err, UnclearModelToUseError)
        assert "tiny-a" in str(err)

    asyncio.run(main())


def test_reload_reports_progress_tagged_with_its_uuid(app_config: dict[str, Any]) -> None:
    async def main() -> None:
        _, client, _ = make(app_config)
        await client.send("reload", {"modelId": "tiny-a"})
        progress = [r for r in client.replies if r["kind"] == "initProgressCallback"]
        assert progress
        assert all(r["uuid"] == "u1" for r in progress)
        assert progress[-1]["content"]["progress"] == 1.0

    asyncio.run(main())


def test_stream_next_and_early_return_free_the_model(app_config: dict[str, Any]) -> None:
    async def main() -> None:
        handler, client, _ = make(app_config)
        await client.send("reload", {"modelId": "tiny-a"})
        init = await client.send(
            "chatCompletionStreamInit", {"request": {**CHAT, "max_tokens": 50}, "modelId": ["tiny-a"]}
        )
        stream_id = init["content"]["streamId"]
        for _ in range(2):
            assert (
                "chunk"
                in (await client.send("completionStreamNextChunk", {"streamId": stream_id}))["content"]
            )
        assert handler.engine.locks.is_held("tiny-a")
        await client.send("completionStreamReturn", {"streamId": stream_id})
        assert not handler.engine.locks.is_held("tiny-a")
        gone = await client.send("completionStreamNextChunk", {"streamId": stream_id})
        assert gone["content"]["name"] == StreamNotFoundError.__name__
        done = await client.send("chatCompletionNonStreaming", {"request": CHAT, "modelId": ["tiny-a"]})
        assert done["content"]["choices"][0]["finish_reason"] == "length"

    asyncio.run(main())


def test_return_while_a_pull_is_in_flight(app_config: dict[str, Any]) -> None:
    async def main() -> None:
        handler, client, _ = make(app_config)
        await client.send("reload", {"modelId": "tiny-a"})
        init = await client.send("chatCompletionStreamInit", {"request": {**CHAT, "max_tokens": 200}})
        sid = init["content"]["streamId"]
        pull = asyncio.ensure_future(client.send("completionStreamNextChunk", {"streamId": sid}))
        await asyncio.sleep(0)
        await client.send("completionStreamReturn", {"streamId": sid})
        reply = await pull
        assert reply["kind"] == "return"
        assert not handler.engine.locks.held()

    asyncio.run(main())


def test_restarted_worker_reloads_once_and_remembers(app_config: dict[str, Any]) -> None:
    async def main() -> None:
        _handler, client, kernels = make(app_config)  # a fresh worker: nothing loaded
        loads = 0
        original = kernels.load

        async def counting(record: Any, progress: Any) -> Any:
            nonlocal loads
            loads += 1
            return await original(record, progress)

        kernels.load = counting  # type: ignore[method-assign]
        for _ in range(3):
            reply = await client.send("chatCompletionNonStreaming", {"request": CHAT, "modelId": ["tiny-a"]})
            assert reply["kind"] == "return"
        assert loads == 1

    asyncio.run(main())


KINDS = [
    "reload",
    "unload",
    "chatCompletionNonStreaming",
    "chatCompletionStreamInit",
    "completionNonStreaming",
    "completionStreamNextChunk",
    "completionStreamReturn",
    "embedding",
    "interruptGenerate",
    "resetChat",
    "getMessage",
    "runtimeStatsText",
    "forwardTokensAndSample",
    "getGPUVendor",
    "setLogLevel",
    "bogus",
]
weird = st.one_of(
    st.none(),
    st.integers(-5, 5),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.just("x" * 5000),
    st.lists(st.integers(-1, 600), max_size=4),
)
requests = st.fixed_dictionaries(
    {},
    optional={
        "messages": st.one_of(st.just(HI), weird),
        "max_tokens": st.one_of(st.integers(-1, 6), weird),
        "temperature": st.one_of(st.floats(-1, 2), weird),
        "stream": st.booleans(),
        "n": st.integers(0, 2),
        "model": st.sampled_from(["tiny-a", "tiny-b", "nope"]),
        "prompt": st.one_of(st.text(max_size=5), weird),
        "input": st.one_of(st.text(max_size=5), weird),
        "top_p": st.one_of(st.floats(-1, 2), weird),
    },
)
contents = st.fixed_dictionaries(
    {},
    optional={
        "request": st.one_of(requests, weird),
        "modelId": st.sampled_from([["tiny-a"], ["tiny-a", "tiny-b"], "nope"]),
        "streamId": st.sampled_from(["stream-1", "stream-2", "nope"]),
        "inputIds": st.one_of(weird, st.just([1, 2])),
        "isPrefill": st.booleans(),
    },
)
messages = st.lists(
    st.tuples(st.sampled_from(KINDS), st.one_of(contents, weird), st.booleans()), min_size=1, max_size=12
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=messages)
def test_every_request_gets_exactly_one_terminal_reply(app_config: dict[str, Any], script: Any) -> None:
    async def main() -> None:
        handler, client, _ = make(app_config)
        tasks = []
        for i, (kind, content, concurrent) in enumerate(script):
            task = asyncio.ensure_future(
                handler.handle({"kind": kind, "uuid": f"m{i}", "content": content}, client.post)
            )
            tasks.append(task)
            if not concurrent:
                await asyncio.wait_for(task, 60)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        for i in range(len(script)):
            assert len(client.terminal(f"m{i}")) == 1
        await handler.handle({"kind": "unload", "uuid": "end"}, client.post)
        assert not handler.engine.locks.held()
        assert not handler.engine.running
        leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert leftover == []

    asyncio.run(main())
