"""The reliability rules of the Python side (docs/CONTRACTS.md): what a hostile or unlucky page
can no longer break.

Over the NumPy reference kernels and the tiny Llamas, through the engine and through the worker
message handler: unreadable messages (cycles, deep nesting, huge payloads) get their one named
``throw``; the end of an answer is never lost to the detokenizer; an interrupt reaches a request
from the moment it is accepted; an interrupted prefill leaves nothing cached; reload and unload
end open streams with a final chunk; a request made inside ``for await`` over a stream of the
same model is served instead of waiting for ever; out-of-vocabulary ``logit_bias`` ids and
duplicate uuids are refused by name. Timeouts here only guard against hangs.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from py_worker.engine import MLCEngine, Stream
from py_worker.errors import InvalidRequestFieldError
from py_worker.generate import Generation, Settings
from py_worker.handler import Handler
from py_worker.protocol import message as message_module
from py_worker.protocol.message import MAX_DEPTH, MAX_ITEMS, plain_message
from py_worker.reference import ReferenceKernels
from tests.host.fakes import EOT, ScriptedKernels

T = TypeVar("T")
HANG_S = 30.0
HI = [{"role": "user", "content": "Hi there"}]
LONG = [{"role": "user", "content": "Tell me a long story about a tiny model that learns to count. " * 2}]
NO_SPECIALS = {str(i): -100 for i in range(256, 512)}  # keep the tiny model on byte tokens
GREEDY = {"temperature": 0, "ignore_eos": True, "logit_bias": NO_SPECIALS}


async def guarded(call: Awaitable[T], what: str = "call") -> T:
    """``call`` with a hang guard: a deadlock fails the test instead of stalling it."""
    try:
        return await asyncio.wait_for(call, HANG_S)
    except TimeoutError:
        pytest.fail(f"{what} hangs")


def text_of(reply: dict[str, Any]) -> str:
    choice = reply["choices"][0]
    return str(choice["message"]["content"] if "message" in choice else choice["text"])


def stream_text(chunks: list[dict[str, Any]]) -> str:
    out = ""
    for c in chunks:
        for choice in c["choices"]:
            out += (choice.get("delta") or {}).get("content") or choice.get("text") or ""
    return out


def finish_of(chunks: list[dict[str, Any]]) -> str | None:
    reasons = [ch.get("finish_reason") for c in chunks for ch in c["choices"] if ch.get("finish_reason")]
    return reasons[-1] if reasons else None


async def engine_with(
    app_config: dict[str, Any], ids: list[str], kernels: ReferenceKernels | None = None, **opts: Any
) -> MLCEngine:
    engine = MLCEngine(kernels or ReferenceKernels(), app_config)
    await engine.reload(ids, opts or None)
    return engine


class Client:
    """Messages to a handler, replies collected; ``send`` returns the one terminal reply."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.replies: list[dict[str, Any]] = []
        self.count = 0

    def post(self, reply: dict[str, Any]) -> None:
        self.replies.append(reply)

    def terminal(self, uuid: Any) -> list[dict[str, Any]]:
        return [r for r in self.replies if r["uuid"] == uuid and r["kind"] in ("return", "throw")]

    def uuid(self) -> str:
        self.count += 1
        return f"u{self.count}"

    async def raw(self, message: Any) -> list[dict[str, Any]]:
        """Send ``message`` as it is; the replies it got."""
        before = len(self.replies)
        await guarded(self.handler.handle(message, self.post), "a raw message")
        return self.replies[before:]

    async def send(self, kind: str, content: Any = None, uuid: str | None = None) -> dict[str, Any]:
        uuid = uuid or self.uuid()
        await guarded(self.handler.handle({"kind": kind, "uuid": uuid, "content": content}, self.post), kind)
        replies = self.terminal(uuid)
        assert len(replies) == 1, replies
        return replies[0]

    async def pull(self, stream_id: str) -> dict[str, Any]:
        return await self.send("completionStreamNextChunk", {"streamId": stream_id})

    async def read_all(self, stream_id: str) -> list[dict[str, Any]]:
        chunks: list[dict[str, Any]] = []
        while True:
            reply = await self.pull(stream_id)
            assert reply["kind"] == "return", reply
            if reply["content"].get("done"):
                return chunks
            chunks.append(reply["content"]["chunk"])


async def client_with(app_config: dict[str, Any], ids: list[str], **opts: Any) -> Client:
    handler = Handler(MLCEngine(ReferenceKernels(), app_config))
    client = Client(handler)
    reply = await client.send("reload", {"modelId": ids, "chatOpts": [opts] * len(ids) if opts else None})
    assert reply["kind"] == "return", reply
    return client


def assert_idle(handler: Handler) -> None:
    engine = handler.engine
    assert not engine.locks.held()
    assert not engine.running
    assert not engine.streams


# ---- item 2: messages that cannot be read ------------------------------------------------------


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": [value]}
    return value


def cyclic_request() -> dict[str, Any]:
    request: dict[str, Any] = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    request["again"] = request
    return request


def cycle_at_top() -> dict[str, Any]:
    message: dict[str, Any] = {"kind": "getGPUVendor", "uuid": "m"}
    message["self"] = message
    return message


def cycle_in_list() -> dict[str, Any]:
    items: list[Any] = []
    items.append(items)
    return {"kind": "unload", "uuid": "m", "content": {"x": items}}


def shared_blowup() -> dict[str, Any]:
    value: Any = [0]
    for _ in range(40):
        value = [value, value]  # a DAG of 41 lists that unfolds into 2**41 items
    return {"kind": "getMessage", "uuid": "m", "content": {"x": value}}


UNREADABLE: dict[str, tuple[Callable[[], Any], str]] = {
    "cycle-in-request": (
        lambda: {"kind": "chatCompletionNonStreaming", "uuid": "m", "content": {"request": cyclic_request()}},
        "cycle",
    ),
    "cycle-at-top": (cycle_at_top, "cycle"),
    "cycle-in-list": (cycle_in_list, "cycle"),
    "nested-3000": (lambda: {"kind": "getMessage", "uuid": "m", "content": {"x": nested(3000)}}, "depth"),
    "nested-past-limit": (lambda: {"kind": "getMessage", "uuid": "m", "content": nested(MAX_DEPTH)}, "depth"),
    "too-many-items": (
        lambda: {"kind": "getMessage", "uuid": "m", "content": {"x": [0] * (MAX_ITEMS + 1)}},
        "size",
    ),
    "shared-blowup": (shared_blowup, "size"),
}


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_unreadable_message_gets_its_one_named_throw_and_harms_nothing(
    app_config: dict[str, Any], case: str
) -> None:
    build, reason = UNREADABLE[case]

    async def main() -> None:
        client = await client_with(app_config, ["tiny-a"])
        stream = await client.send("chatCompletionStreamInit", {"request": {"messages": HI, "max_tokens": 8}})
        first = await client.pull(stream["content"]["streamId"])  # a stream of another request, open
        replies = await client.raw(build())
        assert [r["kind"] for r in replies] == ["throw"], replies
        assert replies[0]["uuid"] == "m"
        assert replies[0]["content"]["name"] == "MalformedMessageError"
        assert replies[0]["content"]["fields"]["reason"] == reason
        rest = await client.read_all(stream["content"]["streamId"])  # the stream goes on unharmed
        assert finish_of([first["content"]["chunk"], *rest]) in ("stop", "length")
        done = await client.send("chatCompletionNonStreaming", {"request": {"messages": HI, "max_tokens": 2}})
        assert done["kind"] == "return"
        assert_idle(client.handler)

    asyncio.run(main())


def test_the_deepest_accepted_message_is_served() -> None:
    assert plain_message(nested(MAX_DEPTH // 2 - 1)) == nested(MAX_DEPTH // 2 - 1)
    shared = {"k": 1}
    assert plain_message({"a": shared, "b": shared}) == {"a": {"k": 1}, "b": {"k": 1}}  # a DAG, not a cycle


def test_too_long_text_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(message_module, "MAX_TEXT", 1000)

    async def main() -> list[dict[str, Any]]:
        handler = Handler(MLCEngine(ReferenceKernels()))
        client = Client(handler)
        return await client.raw({"kind": "getMessage", "uuid": 7, "content": {"x": "é" * 1001}})

    replies = asyncio.run(main())
    assert replies[0]["uuid"] == 7
    assert replies[0]["content"]["fields"]["reason"] == "size"


def test_a_transport_that_cannot_convert_gets_a_named_throw_with_the_uuid() -> None:
    """worker_main hands the handler a JS proxy and a converter (to_py); a conversion that fails
    (a Map with object keys, say) is answered like any unreadable message, with the uuid of the
    envelope when it can be read."""

    def decode(message: Any, depth: int) -> Any:
        if depth > 1:
            raise TypeError("Cannot use key of type Object as a key to a Python dict")
        return {"kind": "reload", "uuid": "u-raw", "content": None}

    async def main() -> list[dict[str, Any]]:
        handler = Handler(MLCEngine(ReferenceKernels()), decode=decode)
        return await Client(handler).raw(object())

    replies = asyncio.run(main())
    assert [r["kind"] for r in replies] == ["throw"]
    assert replies[0]["uuid"] == "u-raw"
    assert replies[0]["content"]["name"] == "MalformedMessageError"
    assert replies[0]["content"]["fields"] == {"reason": "unreadable", "error": "TypeError"}


def test_null_of_the_transport_reads_as_none() -> None:
    null = object()
    assert plain_message({"a": null, "b": [null, 1]}, null) == {"a": None, "b": [None, 1]}


# ---- item 5: the end of an answer is never lost -----------------------------------------------


def complete_prefix(data: bytes) -> str:
    """The text of the longest prefix of ``data`` that ends on a character boundary."""
    for cut in range(len(data), -1, -1):
        try:
            return data[:cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return ""


def test_answer_cut_by_max_tokens_keeps_every_complete_character() -> None:
    text = "abcdefg€hijklmnopq😀rstuvwxyz0123456789éèà ABCDEFGH€€€ IJ"
    data = text.encode()

    async def answer(k: int) -> str:
        kernels = ScriptedKernels([*data, EOT], {"context_window_size": 256, "prefill_chunk_size": 8})
        gen = Generation(
            kernels, 1, Settings(max_tokens=k, stop_token_ids=[EOT]),
            context_window=256, prefill_chunk=8, kv_length=0, rng=random.Random(0),
        )  # fmt: skip
        out = "".join([d.text async for d in gen.run(list(b"Q:"))])
        assert out == gen.outcome.text
        return out

    for k in range(1, len(data) + 1):
        assert asyncio.run(answer(k)) == complete_prefix(data[:k]), k


def test_seeded_answer_with_max_tokens_k_is_a_prefix_of_k_plus_1(app_config: dict[str, Any]) -> None:
    """The tiny byte-level model samples bytes; biased to ``a b c`` and the two bytes of ``é``
    (C3 A9), its answers are full of multi-byte characters, whole, cut and broken."""
    alphabet = {*b"abc", 0xC3, 0xA9}
    bias = {str(i): -100 for i in range(512) if i not in alphabet}

    async def main() -> None:
        engine = await engine_with(app_config, ["tiny-a"])
        request = {"messages": HI, "seed": 17, "temperature": 1.0, "ignore_eos": True, "logit_bias": bias}
        texts, streamed = [], []
        for k in range(1, 41):
            reply = await engine.chat.completions.create(**request, max_tokens=k)
            assert isinstance(reply, dict)
            assert reply["usage"]["completion_tokens"] == k
            texts.append(text_of(reply))
            stream = await engine.chat.completions.create(**request, max_tokens=k, stream=True)
            assert isinstance(stream, Stream)
            streamed.append(stream_text([c async for c in stream]))
        assert streamed == texts  # the stream and the whole answer are the same text
        for k in range(1, 40):
            assert texts[k].startswith(texts[k - 1]), (k, texts[k - 1], texts[k])
        assert "é" in texts[-1], texts[-1]

    asyncio.run(main())


# ---- item 6: interrupt reaches a request from the moment it is accepted -----------------------


def test_interrupt_right_after_a_request_ends_it_with_abort(app_config: dict[str, Any]) -> None:
    async def main() -> None:
        client = await client_with(app_config, ["tiny-a"])
        request = {"messages": HI, "max_tokens": 60, **GREEDY}
        uuid = client.uuid()
        message = {"kind": "chatCompletionNonStreaming", "uuid": uuid, "content": {"request": request}}
        task = asyncio.ensure_future(client.handler.handle(message, client.post))
        await asyncio.sleep(0)  # accepted; the engine is tokenizing: no generation runs yet
        assert (await client.send("interruptGenerate", {}))["kind"] == "return"
        await guarded(task)
        (reply,) = client.terminal(uuid)
        assert reply["content"]["choices"][0]["finish_reason"] == "abort"
        assert reply["content"]["usage"]["completion_tokens"] < 60
        after = await client.send("chatCompletionNonStreaming", {"request": {**request, "max_tokens": 5}})
        assert after["content"]["choices"][0]["finish_reason"] == "length"  # a later request is whole
        assert_idle(client.handler)

    asyncio.run(main())


@pytest.mark.parametrize("when", ["before-first-pull", "with-first-pull"])
def test_interrupt_before_a_stream_generates_ends_it_with_abort(
    app_config: dict[str, Any], when: str
) -> None:
    async def main() -> None:
        client = await client_with(app_config, ["tiny-a"])
        init = await client.send(
            "chatCompletionStreamInit", {"request": {"messages": HI, "max_tokens": 60, **GREEDY}}
        )
        sid = init["content"]["streamId"]
        if when == "before-first-pull":
            await client.send("interruptGenerate", {})
            chunks = await client.read_all(sid)
        else:
            reading = asyncio.ensure_future(client.read_all(sid))
            await asyncio.sleep(0)  # the first pull is in; generation has not started
            await client.send("interruptGenerate", {})
            chunks = await guarded(reading)
        assert finish_of(chunks) == "abort"
        assert len(stream_text(chunks)) < 60
        after = await client.send(
            "chatCompletionStreamInit", {"request": {"messages": HI, "max_tokens": 4, **GREEDY}}
        )
        assert finish_of(await client.read_all(after["content"]["streamId"])) == "length"
        assert_idle(client.handler)

    asyncio.run(main())


def test_interrupt_also_ends_a_request_waiting_for_its_model(app_config: dict[str, Any]) -> None:
    async def main() -> None:
        engine = await engine_with(app_config, ["tiny-a"])
        request = {"messages": HI, "max_tokens": 60, **GREEDY}
        stream = await engine.chat.completions.create(**request, stream=True)
        assert isinstance(stream, Stream)
        first = await stream.__anext__()  # the stream holds the model
        queued = asyncio.ensure_future(engine.chat.completions.create(**request))
        await asyncio.sleep(0)
        engine.interrupt_generate()
        rest = [c async for c in stream]
        assert finish_of([first, *rest]) == "abort"
        reply = await guarded(queued)
        assert isinstance(reply, dict)
        assert reply["choices"][0]["finish_reason"] == "abort"
        assert reply["choices"][0]["message"]["content"] == ""

    asyncio.run(main())


# ---- item 7: an interrupted prefill leaves nothing cached -------------------------------------


class InterruptInPrefill(ReferenceKernels):
    """Calls ``on_prefill`` after the first prefill call of each request (then disarms)."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.on_prefill: Any = None
        self.prefilled: list[int] = []

    async def prefill(self, handle: int, ids: list[int]) -> None:
        self.prefilled.append(len(ids))
        await super().prefill(handle, ids)
        if self.armed:
            self.armed = False
            self.on_prefill()


def test_follow_up_after_an_interrupted_prefill_equals_a_fresh_prefill(app_config: dict[str, Any]) -> None:
    async def main() -> None:
        kernels = InterruptInPrefill()
        engine = await engine_with(app_config, ["tiny-a"], kernels, prefill_chunk_size=8)
        kernels.on_prefill = engine.interrupt_generate
        kernels.armed = True
        first = await engine.chat.completions.create(messages=LONG, max_tokens=20, **GREEDY)
        assert isinstance(first, dict)
        assert first["choices"][0]["finish_reason"] == "abort"
        assert len(kernels.prefilled) == 1  # stopped after the first chunk of a longer prompt
        turn2 = [
            *LONG,
            {"role": "assistant", "content": text_of(first)},
            {"role": "user", "content": "Go on."},
        ]
        follow = await engine.chat.completions.create(messages=turn2, max_tokens=12, **GREEDY)
        fresh_engine = await engine_with(app_config, ["tiny-a"], ReferenceKernels(), prefill_chunk_size=8)
        fresh = await fresh_engine.chat.completions.create(messages=turn2, max_tokens=12, **GREEDY)
        assert isinstance(follow, dict)
        assert isinstance(fresh, dict)
        assert follow["usage"]["prompt_tokens"] == fresh["usage"]["prompt_tokens"]  # the whole prompt
        assert text_of(follow) == text_of(fresh)

    asyncio.run(main())


def test_retry_after_a_stream_left_early_equals_a_fresh_prefill(app_config: dict[str, Any]) -> None:
    """Regenerate: turn 2 is streamed, left after two chunks, and sent again."""

    async def main() -> None:
        engine = await engine_with(app_config, ["tiny-a"])
        first = await engine.chat.completions.create(messages=HI, max_tokens=6, **GREEDY)
        assert isinstance(first, dict)
        turn2 = [
            *HI,
            {"role": "assistant", "content": text_of(first)},
            {"role": "user", "content": "And then?"},
        ]
        stream = await engine.chat.completions.create(messages=turn2, max_tokens=40, stream=True, **GREEDY)
        assert isinstance(stream, Stream)
        await stream.__anext__()
        await stream.__anext__()
        await stream.aclose()
        again = await engine.chat.completions.create(messages=turn2, max_tokens=10, **GREEDY)
        fresh_engine = await engine_with(app_config, ["tiny-a"])
        fresh = await fresh_engine.chat.completions.create(messages=turn2, max_tokens=10, **GREEDY)
        assert isinstance(again, dict)
        assert isinstance(fresh, dict)
        assert text_of(again) == text_of(fresh)

    asyncio.run(main())


# ---- item 8: reload and unload end open streams with a final chunk ----------------------------


@pytest.mark.parametrize("kind", ["unload", "reload"])
def test_reload_or_unload_ends_every_open_stream_with_a_final_chunk(
    app_config: dict[str, Any], kind: str
) -> None:
    async def main() -> None:
        client = await client_with(app_config, ["tiny-a", "tiny-b"])
        long = {"messages": HI, "max_tokens": 200, **GREEDY}
        reading = await client.send("chatCompletionStreamInit", {"request": {**long, "model": "tiny-a"}})
        idle = await client.send(
            "completionStreamInit", {"request": {"prompt": "Once", "model": "tiny-b", "max_tokens": 200}}
        )
        unread = await client.send("chatCompletionStreamInit", {"request": {**long, "model": "tiny-b"}})
        first = await client.pull(reading["content"]["streamId"])
        assert "chunk" in first["content"]
        content = {"modelId": ["tiny-a"]} if kind == "reload" else {}
        assert (await client.send(kind, content))["kind"] == "return"
        assert_idle(client.handler)  # every generation ended before the reply
        rest = await client.read_all(reading["content"]["streamId"])
        assert finish_of([first["content"]["chunk"], *rest]) == "abort"
        for other in (idle, unread):
            chunks = await client.read_all(other["content"]["streamId"])
            assert finish_of(chunks) == "abort"
            assert stream_text(chunks) == ""
        assert not client.handler.streams
        if kind == "reload":
            done = await client.send(
                "chatCompletionNonStreaming", {"request": {"messages": HI, "max_tokens": 3}}
            )
            assert done["content"]["choices"][0]["finish_reason"] in ("stop", "length")

    asyncio.run(main())


# ---- item 9: a request made inside `for await` over a stream of the same model ----------------


INNER = {
    "resetChat": {"keepStats": False},
    "chatCompletionNonStreaming": {"request": {"messages": HI, "max_tokens": 3, **GREEDY}},
    "forwardTokensAndSample": {"inputIds": [72, 105], "isPrefill": True},
    "completionStreamInit": {"request": {"prompt": "Once", "max_tokens": 3, **GREEDY}},
}


@pytest.mark.parametrize("inner", sorted(INNER))
def test_request_inside_a_stream_loop_is_served_then_the_stream_goes_on(
    app_config: dict[str, Any], inner: str
) -> None:
    async def main() -> None:
        client = await client_with(app_config, ["tiny-a"])
        request = {"messages": HI, "max_tokens": 40, "seed": 5, **GREEDY}
        alone = await client.send("chatCompletionNonStreaming", {"request": request})
        init = await client.send("chatCompletionStreamInit", {"request": request})
        sid = init["content"]["streamId"]
        first = await client.pull(sid)  # the reader holds a chunk; the stream holds the model
        reply = await client.send(inner, INNER[inner])  # what the loop body does: no hang
        assert reply["kind"] == "return", reply
        if inner == "completionStreamInit":
            assert finish_of(await client.read_all(reply["content"]["streamId"])) == "length"
        chunks = [first["content"]["chunk"], *await client.read_all(sid)]
        assert finish_of(chunks) == "length"
        assert stream_text(chunks) == text_of(alone["content"])  # the stream lost nothing
        assert_idle(client.handler)

    asyncio.run(main())


def test_python_api_request_inside_async_for_is_served(app_config: dict[str, Any]) -> None:
    async def main() -> None:
        engine = await engine_with(app_config, ["tiny-a"])
        stream = await engine.chat.completions.create(messages=HI, max_tokens=30, stream=True, **GREEDY)
        assert isinstance(stream, Stream)
        inner: list[Any] = []
        chunks = []
        async for chunk in stream:
            chunks.append(chunk)
            if not inner:
                inner.append(
                    await guarded(
                        engine.chat.completions.create(messages=HI, max_tokens=2, **GREEDY), "inner chat"
                    )
                )
                await guarded(engine.reset_chat(), "reset inside the loop")
        assert finish_of(chunks) == "length"
        assert inner[0]["usage"]["completion_tokens"] == 2

    asyncio.run(main())


def test_stream_never_read_frees_its_model_for_the_next_request(app_config: dict[str, Any]) -> None:
    async def main() -> None:
        engine = await engine_with(app_config, ["tiny-a"])
        stream = await engine.chat.completions.create(messages=HI, max_tokens=30, stream=True, **GREEDY)
        assert isinstance(stream, Stream)
        await stream.__anext__()  # read once, then forgotten by its reader
        reply = await guarded(
            engine.chat.completions.create(messages=HI, max_tokens=2, **GREEDY), "the next request"
        )
        assert isinstance(reply, dict)
        assert reply["usage"]["completion_tokens"] == 2
        assert finish_of([c async for c in stream]) == "length"  # its chunks were kept

    asyncio.run(main())


# ---- smaller ones ------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_logit_bias_outside_the_vocabulary_is_refused(app_config: dict[str, Any], stream: bool) -> None:
    async def main() -> None:
        engine = await engine_with(app_config, ["tiny-a"])
        vocab = engine.models["tiny-a"].vocab_size
        with pytest.raises(InvalidRequestFieldError) as err:
            await engine.chat.completions.create(messages=HI, logit_bias={str(vocab): 5}, stream=stream)
        assert err.value.fields["field"] == "logit_bias"
        with pytest.raises(InvalidRequestFieldError):
            await engine.completions.create(prompt="x", logit_bias={str(vocab + 100): -5}, stream=stream)
        ok = await engine.chat.completions.create(messages=HI, logit_bias={str(vocab - 1): 5}, max_tokens=1)
        assert isinstance(ok, dict)
        assert not engine.locks.held()
        assert not engine.running

    asyncio.run(main())


def test_a_duplicate_uuid_in_flight_is_refused_and_the_first_runs_on(app_config: dict[str, Any]) -> None:
    async def main() -> None:
        client = await client_with(app_config, ["tiny-a"])
        request = {"messages": HI, "max_tokens": 8, **GREEDY}
        first = {"kind": "chatCompletionNonStreaming", "uuid": "same", "content": {"request": request}}
        task = asyncio.ensure_future(client.handler.handle(first, client.post))
        await asyncio.sleep(0)
        second = await client.raw({"kind": "unload", "uuid": "same", "content": {}})
        assert [r["kind"] for r in second] == ["throw"]
        assert second[0]["content"]["name"] == "DuplicateUuidError"
        assert second[0]["content"]["fields"] == {"uuid": "same"}
        await guarded(task)
        replies = client.terminal("same")
        assert [r["kind"] for r in replies] == ["throw", "return"]
        assert replies[1]["content"]["choices"][0]["finish_reason"] == "length"
        assert client.handler.engine.loaded_model_ids() == ["tiny-a"]  # the refused unload did nothing
        again = await client.raw({"kind": "getMessage", "uuid": "same", "content": {}})
        assert [r["kind"] for r in again] == ["return"]  # served: the uuid is free again

    asyncio.run(main())


def test_a_request_with_its_own_constructor_field_is_served(app_config: dict[str, Any]) -> None:
    async def main() -> None:
        client = await client_with(app_config, ["tiny-a"])
        request = {"messages": HI, "max_tokens": 2, "constructor": "x", "toString": 1, "__proto__": {}}
        reply = await client.send("chatCompletionNonStreaming", {"request": request})
        assert reply["kind"] == "return", reply

    asyncio.run(main())


@pytest.mark.parametrize(
    "kind", ["constructor", "toString", "hasOwnProperty", "__proto__", "valueOf", "__init__"]
)
def test_builtin_property_names_as_kinds_get_unknown_kind(kind: str) -> None:
    async def main() -> list[dict[str, Any]]:
        return await Client(Handler(MLCEngine(ReferenceKernels()))).raw(
            {"kind": kind, "uuid": 1, "content": {}}
        )

    (reply,) = asyncio.run(main())
    assert reply["content"]["name"] == "UnknownMessageKindError"
    assert reply["uuid"] == 1
