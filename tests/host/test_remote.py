"""The Python half of remote models on CPython, over a recording transport (the layer below it,
js_glue/kernels/remote.js, is tested against a real server in tests/browser/test_remote.py and
tests/pyodide/test_remote.py): record checks, routing beside a local model, what is sent, what
is refused, and interrupts and closed streams aborting the request."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from py_worker import MLCEngine
from py_worker.errors import (
    EmbeddingUnsupportedModelError,
    RemoteConfigError,
    RemoteProtocolError,
    UnclearModelToUseError,
    UnsupportedFieldsError,
    UnsupportedModelIdError,
)
from tests.host.fakes import ScriptedKernels

URL = "http://127.0.0.1:8000/v1"
SECRET = {"authorization": "Bearer sk-secret"}
USER = [{"role": "user", "content": "Hi"}]


def chunk(text: str, finish: str | None = None) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "served",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}  # fmt: skip


class Recording:
    """A transport that answers from a script and records every request and abort; with a
    ``gate``, the "server" answers only once the gate is set (or the request is aborted)."""

    def __init__(self, events: list[Any] | None = None, reply: Any = None, gated: bool = False) -> None:
        self.events = events or []
        self.reply = reply
        self.gate = asyncio.Event() if gated else None
        self.sent: list[tuple[dict[str, Any], str, dict[str, Any]]] = []
        self.aborted: dict[int, asyncio.Event] = {}

    def open(self, record: dict[str, Any], path: str, body: dict[str, Any]) -> int:
        self.sent.append((record, path, body))
        return len(self.sent)

    async def _answered(self, request_id: int) -> bool:
        """False when the request was aborted before the server answered."""
        abort = self.aborted.setdefault(request_id, asyncio.Event())
        if self.gate is not None:
            waits = {asyncio.ensure_future(self.gate.wait()), asyncio.ensure_future(abort.wait())}
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        return not abort.is_set()

    async def next(self, request_id: int) -> Any:
        return self.events.pop(0) if await self._answered(request_id) and self.events else None

    async def result(self, request_id: int) -> Any:
        return self.reply if await self._answered(request_id) else None

    def abort(self, request_id: int) -> None:
        self.aborted.setdefault(request_id, asyncio.Event()).set()

    def was_aborted(self, request_id: int) -> bool:
        return request_id in self.aborted and self.aborted[request_id].is_set()


def sync(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """An async test run to its end on a fresh event loop."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def engine_with(transport: Recording, *records: dict[str, Any]) -> MLCEngine:
    kernels = ScriptedKernels([104, 105], {"context_window_size": 64, "prefill_chunk_size": 8})
    kernels.remote = transport  # type: ignore[attr-defined]
    local = {"model_id": "local", "model": "/m"}
    return MLCEngine(kernels, {"model_list": [local, *records]})


def remote(model_id: str = "far", **extra: Any) -> dict[str, Any]:
    return {"model_id": model_id, "backend": "remote", "base_url": URL, "headers": SECRET, **extra}


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"base_url": "file:///etc/passwd"}, "base_url"),
        ({"base_url": "http://user:pw@127.0.0.1/v1"}, "base_url"),
        ({"headers": {"authorization": 7}}, "headers"),
        ({"timeout_ms": 0}, "timeout_ms"),
        ({"concurrency": 0}, "concurrency"),
    ],
)
@sync
async def test_bad_records_are_refused_at_reload(extra: dict[str, Any], field: str) -> None:
    engine = engine_with(Recording(), remote(**extra))
    with pytest.raises(RemoteConfigError) as info:
        await engine.reload("far")
    assert info.value.fields["field"] == field
    assert "sk-secret" not in str(info.value.to_dict())


@sync
async def test_no_transport_no_remote_model() -> None:
    engine = MLCEngine(ScriptedKernels([1]), {"model_list": [remote()]})
    with pytest.raises(RemoteConfigError):
        await engine.reload("far")


@sync
async def test_routing_beside_a_local_model_and_what_is_sent() -> None:
    message = {"role": "assistant", "content": "ok"}
    usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
    reply = {"id": "x", "object": "chat.completion", "created": 1, "model": "served", "choices": [choice]}
    transport = Recording(reply={**reply, "usage": usage})
    engine = engine_with(transport, remote(model="served-name"))
    await engine.reload(["far", "local"])
    assert engine.loaded_model_ids() == ["far", "local"]
    with pytest.raises(UnclearModelToUseError):
        await engine.chat.completions.create(messages=USER)
    reply = await engine.chat.completions.create(
        model="far", messages=USER, temperature=0, seed=3, max_tokens=5, unknown_field=1
    )
    assert reply["model"] == "far"
    assert reply["usage"]["completion_tokens"] == 1
    record, path, body = transport.sent[0]
    assert (record["base_url"], path) == (URL, "/chat/completions")
    assert body == {"model": "served-name", "messages": USER, "temperature": 0, "seed": 3, "max_tokens": 5}
    with pytest.raises(UnsupportedModelIdError):
        await engine.forward_tokens_and_sample([1], True, model="far")
    await engine.reset_chat(model="far")  # a server keeps no chat: nothing to reset


@sync
async def test_a_request_cannot_say_where_it_goes() -> None:
    transport = Recording()
    engine = engine_with(transport, remote())
    await engine.reload("far")
    for extra in ({"base_url": "http://evil/v1"}, {"headers": {"x": "y"}}, {"api_key": "k"}):
        with pytest.raises(UnsupportedFieldsError):
            await engine.chat.completions.create(messages=USER, **extra)
    grammar = {"type": "grammar", "grammar": 'root ::= "a"'}
    with pytest.raises(UnsupportedFieldsError):
        await engine.chat.completions.create(messages=USER, response_format=grammar)
    with pytest.raises(EmbeddingUnsupportedModelError):
        await engine.embeddings.create(input="x")
    assert transport.sent == []  # nothing was sent


@sync
async def test_interrupt_aborts_a_waiting_request_and_a_stream() -> None:
    transport = Recording(events=[chunk("a"), chunk("b"), chunk("c")], gated=True)
    engine = engine_with(transport, remote())
    await engine.reload("far")
    waiting = asyncio.ensure_future(engine.chat.completions.create(messages=USER))
    await asyncio.sleep(0.01)
    engine.interrupt_generate()
    reply = await asyncio.wait_for(waiting, 10)  # a hang guard
    assert reply["choices"][0]["finish_reason"] == "abort"
    assert transport.was_aborted(1)
    assert transport.gate is not None
    transport.gate.set()
    stream = await engine.chat.completions.create(messages=USER, stream=True)
    first = await stream.__anext__()
    engine.interrupt_generate()
    rest = [c async for c in stream]
    assert first["model"] == "far"
    assert rest[-1]["choices"][0]["finish_reason"] == "abort"
    assert transport.was_aborted(2)


@sync
async def test_closing_a_stream_aborts_it_and_frees_a_one_at_a_time_model() -> None:
    transport = Recording(events=[chunk("a"), chunk("b"), chunk("c", "stop")])
    engine = engine_with(transport, remote(concurrency=1))
    await engine.reload("far")
    stream = await engine.chat.completions.create(messages=USER, stream=True)
    await stream.__anext__()
    await stream.aclose()
    assert transport.was_aborted(1)
    assert not engine.locks.is_held("far")


@sync
async def test_a_reply_that_is_not_openai_is_a_named_error() -> None:
    engine = engine_with(
        Recording(reply={"data": [{"embedding": [[0.1], [0.2]]}]}), remote(model_type="embedding")
    )
    await engine.reload("far")
    with pytest.raises(RemoteProtocolError):
        await engine.embeddings.create(input="x")
